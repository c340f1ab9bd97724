"""One pre-training step of violetv2-base, end to end, with its breakdown and peak memory, per variant.

    python bench/pretrain_step.py                                   # every variant, CPU (+ CUDA if present)
    python bench/pretrain_step.py --variants video none --steps 4 --rounds 1
    git archive 5fdbb16 src | tar -x -C /tmp/violetv2-baseline      # the pre-change code, for "baseline"
    python bench/pretrain_step.py --baseline-src /tmp/violetv2-baseline/src

Workload (issue 10): violetv2-base, fp32 on CPU (bf16 autocast on CUDA), B=2 x T=4 x 224 px, text 32 tokens,
SIF target with a random-weight Swin-B teacher (injected, no loading), random + blockwise masking at 15%, VTM
(3 negatives, i.e. min(B, 4) - 1) + MLM + MVM, backward, gradient clipping at 1.0, AdamW. Each variant runs in
its own process, one at a time (peak memory ~12 GiB on CPU), ``--rounds`` times in turn (so a change of load
hits every variant alike); each process does one warm-up step then ``--steps`` timed ones.

Variants: ``<checkpointing>`` with VTM on the masked pair (one Video Swin pass: the default), ``unmasked-<ckpt>``
(VTM on the unmasked clip: both clips in one batched Video Swin call), and ``baseline-<none|all>``: the code of
``--baseline-src`` (the pre-change main: VTM on the unmasked clip in its own Video Swin pass, then the masked
clip; checkpointing off or everything) run by the same worker.

Breakdown (forward hooks, summed over the step's forward; CUDA synchronised at every boundary): teacher (SIF
forward), Video Swin (forward only: recomputation under checkpointing is part of backward), fusion (forward),
backward (incl. recomputation), optimiser (clipping + AdamW). Peak memory: the process's peak RSS on CPU,
``torch.cuda.max_memory_allocated`` on CUDA. The machine's load average is recorded before and after each process.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
OURS_SRC = os.path.join(HERE, "..", "src")
MODES = ("none", "video", "fusion", "all")
DEFAULT_VARIANTS = ["baseline-none", "none", "video", "fusion", "all", "unmasked-video", "baseline-all"]


# ----------------------------------------------------------------------------------------------- worker


def _batch(device: str, size: int, vocab: int, b: int = 2, t: int = 4, length: int = 32):
    import torch

    from violetv2.data.batch import VideoTextBatch

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000 if vocab > 2000 else 200, vocab, (b, length), generator=g)
    ids[:, 0], ids[:, 20], ids[:, 21:] = 101, 102, 0  # [CLS] 19 words [SEP] [PAD]...
    video = torch.randn(b, t, 3, size, size, generator=g)
    return VideoTextBatch(
        video=video.to(device), text_ids=ids.to(device), text_mask=(ids != 0).long().to(device)
    )


def _module(variant: str, device: str, preset: str = "violetv2-base"):
    import torch
    from transformers import SwinModel

    from violetv2.mvm.teachers import freeze, swin_base_in22k_config
    from violetv2.tasks.pretrain import PretrainModule

    mode = variant.split("-")[-1]
    baseline = variant.startswith("baseline")
    kwargs = {}
    params = inspect.signature(PretrainModule.__init__).parameters
    if "vtm_on" in params:
        kwargs["vtm_on"] = "unmasked" if variant.startswith("unmasked") else "masked"
    ckpt = {"none": False, "all": True}[mode] if baseline else mode
    torch.manual_seed(0)
    module = PretrainModule(
        preset=preset,
        config={"gradient_checkpointing": ckpt},
        mvm_targets={"sif": 1.0},
        mvm_target_options={"sif": {"feature_dim": 1024}},
        masking=["random", "blockwise"],
        mask_ratio=0.15,
        **kwargs,
    )
    teacher = SwinModel(swin_base_in22k_config(), add_pooling_layer=False)
    module.mvm_targets["sif"]._teacher = freeze(teacher)  # random weights, injected: no loading
    return module.to(device).train(), teacher.to(device)


class _Timer:
    """Forward time and call sizes of a module, via hooks, while ``active``."""

    def __init__(self, module, sync) -> None:  # noqa: ANN001
        self.total, self.calls, self.active, self._sync, self._start = 0.0, [], False, sync, 0.0
        module.register_forward_pre_hook(self._pre)
        module.register_forward_hook(self._post)

    def _pre(self, module, args) -> None:  # noqa: ANN001
        if self.active:
            self._sync()
            self._start = time.perf_counter()

    def _post(self, module, args, out) -> None:  # noqa: ANN001
        if self.active:
            self._sync()
            self.total += time.perf_counter() - self._start
            first = args[0] if args else None
            self.calls.append(int(first.shape[0]) if hasattr(first, "shape") else -1)

    def take(self) -> tuple[float, list[int]]:
        out = (self.total, self.calls)
        self.total, self.calls = 0.0, []
        return out


def worker(variant: str, device: str, steps: int, threads: int, preset: str = "violetv2-base") -> dict:
    import torch

    from violetv2.tasks.base import param_groups

    torch.set_num_threads(threads)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    module, teacher = _module(variant, device, preset)
    batch = _batch(device, module.cfg.image_size, module.cfg.vocab_size)
    opt = torch.optim.AdamW(param_groups(module, 1e-3, 5e-5), lr=5e-5, betas=(0.9, 0.98))
    params = [p for p in module.parameters() if p.requires_grad]
    timers = {
        "teacher": _Timer(teacher, sync),
        "video_swin": _Timer(module.model.backbone.video.swin, sync),
        "fusion": _Timer(module.model.backbone.fusion, sync),
    }
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.cuda.reset_peak_memory_stats()

    def step() -> dict:
        for t in timers.values():
            t.active = True
        sync()
        start = time.perf_counter()
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            out = module.pretrain_losses(batch)
        sync()
        fwd = time.perf_counter()
        for t in timers.values():
            t.active = False
        out["loss"].backward()
        sync()
        bwd = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        end = time.perf_counter()
        rec = {
            "step_s": end - start,
            "forward_s": fwd - start,
            "backward_s": bwd - fwd,
            "optimiser_s": end - bwd,
        }
        for name, t in timers.items():
            rec[f"{name}_s"], rec[f"{name}_calls"] = t.take()
        rec["loss"] = float(out["loss"])
        return rec

    step()  # warm-up
    records = [step() for _ in range(steps)]
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"variant": variant, "device": device, "threads": threads, "peak_gib": peak, "steps": records}


def block_worker(threads: int, repeats: int = 3) -> dict:
    """Forward + backward of one shifted Video Swin-B stage-1 block on the step's feature map [2, 4, 56, 56, 128]
    (windows (4, 7, 7), 128 windows, shift (0, 3, 3)): median time and peak RSS growth over the inputs."""
    import torch

    from violetv2.models.video_swin import SwinBlock3D

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    block = SwinBlock3D(128, 4, (8, 7, 7), (4, 3, 3), 4.0, 0.0, 1e-5)
    x = torch.randn(2, 4, 56, 56, 128, requires_grad=True)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    block(x).sum().backward()  # the first pass: its peak above the inputs is the figure; then timing
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        block(x).sum().backward()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "peak_growth_mib": peak}


def block_main(baseline_src: str | None, threads: int) -> int:
    for name, src in (("baseline", baseline_src), ("ours", OURS_SRC)):
        if src is None:
            continue
        env = {**os.environ, "PYTHONPATH": os.path.abspath(src), "OMP_NUM_THREADS": str(threads)}
        cmd = [sys.executable, __file__, "--worker", "block", "--threads", str(threads)]
        load = os.getloadavg()[0]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        rec = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{name}: {rec['median_s']:.2f} s fwd+bwd, peak RSS growth {rec['peak_growth_mib']:.0f} MiB, "
              f"load {load:.1f}-{os.getloadavg()[0]:.1f}")  # fmt: skip
    return 0


# ----------------------------------------------------------------------------------------- orchestrator


def _run(variant: str, device: str, steps: int, threads: int, baseline_src: str | None, preset: str) -> dict:
    src = baseline_src if variant.startswith("baseline") else OURS_SRC
    if src is None:
        return {"variant": variant, "device": device, "error": "no --baseline-src"}
    env = {**os.environ, "PYTHONPATH": os.path.abspath(src), "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, __file__, "--worker", variant, "--device", device]
    cmd += ["--steps", str(steps), "--threads", str(threads), "--preset", preset]
    load_before = os.getloadavg()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"variant": variant, "device": device, "error": proc.stderr[-2000:]}
    rec = json.loads(proc.stdout.strip().splitlines()[-1])
    rec["load_before"], rec["load_after"] = load_before, os.getloadavg()
    return rec


def _median(records: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in records)


def summarise(runs: list[dict]) -> list[dict]:
    """One row per (device, variant): medians over every timed step of every round."""
    rows: dict[tuple[str, str], dict] = {}
    for run in runs:
        if "error" in run:
            continue
        key = (run["device"], run["variant"])
        row = rows.setdefault(
            key, {"device": run["device"], "variant": run["variant"], "steps": [], "peaks": []}
        )
        row["steps"] += run["steps"]
        row["peaks"].append(run["peak_gib"])
        row.setdefault("loads", []).append(run["load_before"][0])
        row["loads"].append(run["load_after"][0])
    out = []
    for row in rows.values():
        steps = row.pop("steps")
        row.update({k: _median(steps, k) for k in ("step_s", "forward_s", "backward_s", "optimiser_s")})
        row.update({k: _median(steps, k) for k in ("teacher_s", "video_swin_s", "fusion_s")})
        row["video_swin_calls"] = steps[-1]["video_swin_calls"]
        row["fusion_calls"] = steps[-1]["fusion_calls"]
        row["n_steps"] = len(steps)
        row["peak_gib"] = max(row.pop("peaks"))
        out.append(row)
    return out


def table(rows: list[dict], reference: str = "baseline-none") -> str:
    lines = [
        "| variant | step s | ratio vs " + reference + " | teacher s | Video Swin s (calls: clips) "
        "| fusion s (calls: sequences) | backward s | optimiser s | peak GiB | peak ratio | load avg (1 min) |",
        "|---" * 11 + "|",
    ]
    ref = {r["device"]: r for r in rows if r["variant"] == reference}
    for r in rows:
        base = ref.get(r["device"])
        ratio = f"{r['step_s'] / base['step_s']:.2f}" if base else "-"
        peak_ratio = f"{r['peak_gib'] / base['peak_gib']:.2f}" if base else "-"
        loads = f"{min(r['loads']):.1f}-{max(r['loads']):.1f}"
        lines.append(
            f"| {r['device']} {r['variant']} | {r['step_s']:.1f} | {ratio} | {r['teacher_s']:.2f} | "
            f"{r['video_swin_s']:.2f} ({r['video_swin_calls']}) | {r['fusion_s']:.2f} ({r['fusion_calls']}) | "
            f"{r['backward_s']:.1f} | {r['optimiser_s']:.2f} | {r['peak_gib']:.2f} | {peak_ratio} | {loads} |"
        )
    return "\n".join(lines)


def machine() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        cpu = platform.processor()
    import torch

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    return f"CPU {cpu} ({os.cpu_count()} cores), GPU {gpu}, python {platform.python_version()}, torch {torch.__version__}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS)
    ap.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when present")
    ap.add_argument("--steps", type=int, default=4, help="timed steps per process (after one warm-up)")
    ap.add_argument("--rounds", type=int, default=1, help="processes per variant, run in turn")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--baseline-src", default=None, help="src/ of the pre-change code (git archive)")
    ap.add_argument("--json", default=None, help="write every run's records here")
    ap.add_argument("--preset", default="violetv2-base", help="tiny: a quick check of the script itself")
    ap.add_argument(
        "--block", action="store_true", help="only the shifted-block memory figure (see block_worker)"
    )
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker == "block":
        print(json.dumps(block_worker(a.threads)))
        return 0
    if a.worker:
        print(json.dumps(worker(a.worker, a.device, a.steps, a.threads, a.preset)))
        return 0
    if a.block:
        return block_main(a.baseline_src, a.threads)
    import torch

    devices = a.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    print(machine(), flush=True)
    start, runs = time.time(), []
    for _ in range(a.rounds):
        for device in devices:
            for variant in a.variants:
                run = _run(variant, device, a.steps, a.threads, a.baseline_src, a.preset)
                runs.append(run)
                brief = (
                    run.get("error") or f"{statistics.median(s['step_s'] for s in run['steps']):.1f} s/step"
                )
                print(f"{device} {variant}: {brief}", flush=True)
                if a.json:  # after every process: a cut-short run keeps what it measured
                    with open(a.json, "w") as f:
                        json.dump({"machine": machine(), "args": vars(a), "runs": runs}, f, indent=1)
    print(f"\n{len(runs)} processes, {(time.time() - start) / 60:.1f} min wall\n")
    print(table(summarise(runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
