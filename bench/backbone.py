"""Forward + backward throughput and peak memory of the VIOLET backbone.

    python bench/backbone.py                       # tiny and violetv2-base on CPU (+ CUDA if present)
    python bench/backbone.py --presets tiny --batch 2 --repeats 5

Each (preset, device, batch) runs in its own process so peak memory is clean: peak RSS growth on CPU,
``torch.cuda.max_memory_allocated`` on CUDA (bf16 autocast there). Input: 4 frames at 224 px (64 px for
``tiny``, its native size), text length 32; loss = VTM logit + MLM logits + SIF head output (every head runs).
Reports the median step time over ``--repeats`` steps after one warm-up step, and clips/s.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time


def one(preset: str, device: str, batch: int, repeats: int, checkpointing: bool) -> dict:
    import torch

    from violetv2.config import VioletConfig
    from violetv2.models import VioletModel

    torch.manual_seed(0)
    cfg = VioletConfig.from_name(preset, gradient_checkpointing=checkpointing)
    model = VioletModel.published(cfg).to(device).train()
    size = cfg.image_size
    video = torch.randn(batch, 4, 3, size, size, device=device)
    ids = torch.randint(5, cfg.vocab_size, (batch, 32), device=device)
    mask = torch.ones_like(ids)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.cuda.reset_peak_memory_stats()

    def step() -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            fused = model(video, ids, mask)
            loss = model.vtm_logits(fused).sum() + model.mlm_logits(fused).float().mean()
            loss = loss + model.mvm_heads["sif"](fused.video_patches).float().mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    step()  # warm-up
    times = [step() for _ in range(repeats)]
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if device == "cuda"
        else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    )
    med = statistics.median(times)
    return {
        "preset": preset,
        "device": device,
        "batch": batch,
        "size": size,
        "checkpointing": checkpointing,
        "median_step_s": med,
        "clips_per_s": batch / med,
        "peak_mib": peak,
        "threads": torch.get_num_threads(),
    }


def machine() -> str:
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?"
    )
    import os

    import torch

    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (
        f"{cpu}, {os.cpu_count()} cores{gpu}; torch {torch.__version__}; Python {platform.python_version()}"
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="+", default=["tiny", "violetv2-base"])
    p.add_argument("--batch", nargs="+", type=int, default=[1, 2])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--checkpointing", action="store_true", help="activation checkpointing on")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        preset, device, batch = args.one.split(",")
        print(json.dumps(one(preset, device, int(batch), args.repeats, args.checkpointing)))
        return
    import torch

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"machine: {machine()}")
    print("| preset | device | batch | px | median step (s) | clips/s | peak memory (MiB) |")
    print("|---|---|---|---|---|---|---|")
    for preset in args.presets:
        for device in devices:
            for batch in args.batch:
                cmd = [
                    sys.executable,
                    __file__,
                    "--one",
                    f"{preset},{device},{batch}",
                    "--repeats",
                    str(args.repeats),
                ]
                cmd += ["--checkpointing"] if args.checkpointing else []
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode:
                    print(
                        f"| {preset} | {device} | {batch} | failed: {out.stderr.strip().splitlines()[-1]} |"
                    )
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                print(
                    f"| {preset} | {device} | {batch} | {r['size']} | {r['median_step_s']:.3f} | "
                    f"{r['clips_per_s']:.2f} | {r['peak_mib']:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
