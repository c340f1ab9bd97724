"""GPU check of the published pre-training recipe: bf16 parity deviation, then throughput of violetv2-base.

    python bench/gpu_check.py --out /tmp/gpu_check              # on a CUDA machine (called by gpu_check.sh)
    python bench/gpu_check.py --dry-run --out /tmp/gpu_dry      # same code path on CPU, tiny preset, seconds

Measures one pre-training step (VTM + MLM + MVM with the SIF target: a frozen Swin-B of the published
architecture, randomly initialised since the machine has no network; its cost is that of the real one) under
bf16 autocast at 4 frames / 224 px, at batch 20 and at the largest batch that fits, for each of eager,
activation checkpointing (``set_gradient_checkpointing``), ``torch.compile`` and both:

- ``clips_per_s`` / ``step_s``: steps run back to back, synchronised only at the ends;
- ``split_s``: one more pass synchronised between phases: ``teacher`` (MVM target), ``forward`` (the rest of
  the losses), ``backward``, ``optimizer``; ``data`` is the per-batch time of the DataLoader (synthetic
  videos at the same size, ``--workers`` processes) measured on its own;
- ``peak_mem_gib``: ``torch.cuda.max_memory_allocated``;
- ``mfu``: model FLOPs of one step (``torch.utils.flop_counter``, eager, teacher included, recomputation not
  counted) / step time / the device's dense bf16 peak (known devices only, else null).

Writes ``gpu_check.json`` and ``gpu_check.md`` under ``--out``. A ``--budget-s`` bounds the run: what does not
fit is recorded as skipped.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from violetv2.tasks.base import param_groups  # noqa: E402
from violetv2.tasks.pretrain import PretrainModule  # noqa: E402

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0}
VARIANTS = {
    "eager": (False, False),
    "ckpt": (True, False),
    "compile": (False, True),
    "ckpt+compile": (True, True),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--dry-run", action="store_true", help="CPU, tiny preset, small sizes: the same code in seconds"
    )
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/gpu_check")))
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation happens here)")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="DataLoader workers")
    p.add_argument("--max-batch-limit", type=int, default=512, help="stop the largest-batch search here")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--budget-s", type=float, default=330.0, help="skip measurements once this is spent")
    p.add_argument("--reference", type=Path, default=ROOT.parent / "shared" / "reference")
    args = p.parse_args(argv)
    if args.dry_run:
        args.batch, args.frames, args.size = min(args.batch, 2), 2, 32
        args.steps, args.warmup, args.workers, args.max_batch_limit = 1, 0, 0, min(args.batch, 2)
        args.variants = [v for v in args.variants if "compile" not in v]  # no C++ toolchain needed on CPU
    return args


# ---------------------------------------------------------------------------------------------- set-up


def teacher_dir(tiny: bool, root: Path) -> tuple[str, int]:
    """A local Swin teacher of the published architecture (random weights) and its width."""
    from transformers import SwinConfig, SwinModel

    if tiny:
        cfg = SwinConfig(
            image_size=64, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=2
        )
    else:  # microsoft/swin-base-patch4-window7-224-in22k
        cfg = SwinConfig(
            image_size=224, embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], window_size=7
        )
    path = root / ("swin-tiny" if tiny else "swin-base")
    if not (path / "config.json").exists():
        SwinModel(cfg, add_pooling_layer=False).save_pretrained(path)
    return str(path), cfg.embed_dim * 2 ** (len(cfg.depths) - 1)


def build(
    args: argparse.Namespace, teacher: tuple[str, int], ckpt: bool, compile_: bool, device: torch.device
):
    preset = "tiny" if args.dry_run else "violetv2-base"
    module = PretrainModule(
        preset=preset,
        config={"num_frames": args.frames, "image_size": args.size},
        mvm_targets={"sif": 1.0},
        mvm_target_options={"sif": {"model_name_or_path": teacher[0], "feature_dim": teacher[1]}},
        compile=compile_,
    )
    module.model.backbone.set_gradient_checkpointing(ckpt)
    module.configure_model()
    module.to(device).train()
    module.mvm_targets.setup(device)
    opt = torch.optim.AdamW(
        param_groups(module, 1e-3, 5e-5), lr=5e-5, betas=(0.9, 0.98), fused=device.type == "cuda"
    )
    return module, opt


def fake_batch(module: PretrainModule, batch: int, args: argparse.Namespace, device: torch.device):
    from violetv2.data.batch import VideoTextBatch

    g = torch.Generator().manual_seed(0)
    video = torch.randn(batch, args.frames, 3, args.size, args.size, generator=g)
    ids = torch.randint(1000, min(module.cfg.vocab_size, 30000), (batch, 32), generator=g)
    ids[:, 0] = module.special.ids["cls"]
    return VideoTextBatch(
        video=video.to(device), text_ids=ids.to(device), text_mask=torch.ones_like(ids).to(device),
        sample_ids=[str(i) for i in range(batch)], video_ids=[str(i) for i in range(batch)],
        is_image=torch.zeros(batch, dtype=torch.bool, device=device),
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------- timing


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step(
    module: PretrainModule, opt: torch.optim.Optimizer, batch: Any, device: torch.device, times=None
) -> None:
    """One training step under bf16 autocast; with ``times``, synchronised and split into phases."""
    clock = _Clock(device, times)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        with clock.phase("forward"):
            loss = module.pretrain_losses(batch)["loss"]
    with clock.phase("backward"):
        loss.backward()
    with clock.phase("optimizer"):
        opt.step()
        opt.zero_grad(set_to_none=True)


class _Clock:
    def __init__(self, device: torch.device, times: dict[str, float] | None) -> None:
        self.device, self.times = device, times

    @contextmanager
    def phase(self, name: str):
        if self.times is None:
            yield
            return
        sync(self.device)
        start = time.perf_counter()
        yield
        sync(self.device)
        self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - start


@contextmanager
def timed_teacher(module: PretrainModule, device: torch.device, times: dict[str, float]):
    """Time ``mvm_targets.compute`` (the frozen teacher) inside the forward phase."""
    targets = module.mvm_targets
    original = targets.compute

    def compute(*a: Any, **k: Any):
        sync(device)
        start = time.perf_counter()
        out = original(*a, **k)
        sync(device)
        times["teacher"] = times.get("teacher", 0.0) + time.perf_counter() - start
        return out

    targets.compute = compute
    try:
        yield
    finally:
        del targets.compute


def step_flops(module: PretrainModule, opt: torch.optim.Optimizer, batch: Any, device: torch.device) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step(module, opt, batch, device)
    return float(counter.get_total_flops())


def measure(
    args, built, variant: str, batch: int, device: torch.device, flops: dict[int, float] | None
) -> dict:
    """Time ``args.steps`` steps of a built ``(module, opt)`` at ``batch``; ``{"oom": True}`` if it does not fit."""
    module, opt = built
    ckpt, compile_ = VARIANTS[variant]
    row: dict[str, Any] = {"variant": variant, "batch": batch, "checkpointing": ckpt, "compile": compile_}
    data = None
    try:
        data = fake_batch(module, batch, args, device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        for _ in range(args.warmup):
            step(module, opt, data, device)
        sync(device)
        row["warmup_s"] = round(time.perf_counter() - start, 3)
        start = time.perf_counter()
        for _ in range(args.steps):
            step(module, opt, data, device)
        sync(device)
        row["step_s"] = (time.perf_counter() - start) / args.steps
        row["clips_per_s"] = batch / row["step_s"]
        split: dict[str, float] = {}
        with timed_teacher(module, device, split):
            step(module, opt, data, device, split)
        split["forward"] -= split.get("teacher", 0.0)
        row["split_s"] = {k: round(v, 5) for k, v in split.items()}
        if device.type == "cuda":
            row["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        if flops is None:  # a probe of the largest-batch search
            return row
        if batch not in flops and not compile_:  # model FLOPs: counted without recomputation
            module.model.backbone.set_gradient_checkpointing(False)
            flops[batch] = step_flops(module, opt, data, device)
            module.model.backbone.set_gradient_checkpointing(ckpt)
        row["tflop_per_step"] = flops[batch] / 1e12 if batch in flops else None
    except torch.OutOfMemoryError:
        row = {**row, "oom": True}
    finally:
        del data
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


def largest_batch(args, built, variant: str, device: torch.device, deadline: float) -> int | None:
    """Grow the batch by 1.5x from ``--batch`` until a step does not fit (or the limit / budget is reached)."""
    fit, batch = None, args.batch
    probe = argparse.Namespace(**{**vars(args), "steps": 1, "warmup": min(args.warmup, 1)})
    while batch <= args.max_batch_limit and time.time() < deadline:
        if measure(probe, built, variant, batch, device, None).get("oom"):
            break
        fit, batch = batch, max(batch + 1, math.ceil(batch * 1.5))
    return fit


def data_time(args: argparse.Namespace, root: Path) -> float | None:
    """Seconds per batch of the pre-training DataLoader on synthetic videos at ``--size`` (measured alone)."""
    from violetv2.data.datamodules import PretrainDataModule, Source
    from violetv2.data.synthetic import generate

    clips = max(4 * args.batch, 8)
    paths = generate(
        root / "synthetic", num_train=clips, num_test=4, size=min(args.size, 224), workers=args.workers
    )
    source = Source(
        "webvid_csv", str(paths.webvid_train), str(paths.videos), options={"video_layout": "flat"}
    )
    dm = PretrainDataModule(
        train=[source], tokenizer=str(paths.tokenizer), batch_size=args.batch, num_frames=args.frames,
        image_size=args.size, num_workers=args.workers, pin_memory=False,
    )  # fmt: skip
    dm.setup("fit")
    loader = iter(dm.train_dataloader())
    next(loader)  # worker start-up
    start, n = time.perf_counter(), 0
    for _ in loader:
        n += 1
    return (time.perf_counter() - start) / n if n else None


# ---------------------------------------------------------------------------------------------- parity


def parity_bf16(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Largest deviation of the release forward under bf16 autocast from the fp32 reference (recorded)."""
    folder = args.reference / "parity"
    if args.dry_run or not (folder / "make_state_dict.py").exists():
        return {"skipped": f"{folder} not found" if not args.dry_run else "dry run"}
    import importlib.util

    from safetensors.torch import load_file

    from violetv2.convert.release import convert_release

    spec = importlib.util.spec_from_file_location("make_state_dict", folder / "make_state_dict.py")
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)  # type: ignore[union-attr]
    model, _ = convert_release(maker.build_state_dict(), source_name="parity state dict")
    ref = load_file(str(folder / "violetv2_parity.safetensors"))
    model = model.to(device).eval()
    video, ids, mask = (ref[k].to(device) for k in ("in.video", "in.txt_ids", "in.txt_mask"))
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
        fused = model.backbone(video, ids, mask)
        got = {"c.cross_out": fused.hidden, "e.mlm_logits_pos1_8": model.mlm_logits(fused)[:, 1:9]}
        got["f.mvm_sif_pred"] = model.mvm_heads["sif"](fused.video_patches)
    out = {}
    for name, value in got.items():
        diff = (value.float().cpu() - ref[name]).abs()
        out[name] = {
            "max_abs": float(diff.max()),
            "mean_abs": float(diff.mean()),
            "ref_abs_max": float(ref[name].abs().max()),
        }
    return out


# ---------------------------------------------------------------------------------------------- report


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# GPU check ({result['device_name']}, torch {result['torch']})", ""]
    lines += [f"preset {result['preset']}, {result['frames']} frames, {result['size']} px, SIF, bf16 autocast; "
              f"data loader alone: {result['data_s_per_batch']} s/batch", ""]  # fmt: skip
    lines += [
        "| variant | batch | clips/s | step s | teacher | forward | backward | optimizer | peak GiB | MFU |"
    ]
    lines += ["|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        if r.get("oom") or r.get("skipped"):
            lines.append(
                f"| {r['variant']} | {r['batch']} | {'OOM' if r.get('oom') else r['skipped']} |||||||"
            )
            continue
        s = r["split_s"]
        mfu = f"{r['mfu']:.1%}" if r.get("mfu") is not None else "-"
        lines.append(
            f"| {r['variant']} | {r['batch']} | {r['clips_per_s']:.1f} | {r['step_s']:.3f} | {s.get('teacher', 0):.3f} "
            f"| {s['forward']:.3f} | {s['backward']:.3f} | {s['optimizer']:.3f} | {r.get('peak_mem_gib', '-')} | {mfu} |"
        )
    lines += ["", "bf16 parity deviation (recorded, not asserted): " + json.dumps(result["parity_bf16"])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    deadline = time.time() + args.budget_s
    device = torch.device("cpu" if args.dry_run or not torch.cuda.is_available() else "cuda")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    teacher = teacher_dir(args.dry_run, work)
    result: dict[str, Any] = {
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "preset": "tiny" if args.dry_run else "violetv2-base",
        "frames": args.frames, "size": args.size, "dry_run": args.dry_run,
    }  # fmt: skip
    result["parity_bf16"] = parity_bf16(args, device)
    result["data_s_per_batch"] = data_time(args, work)
    flops: dict[int, float] = {}
    runs, peak, largest = [], peak_tflops(device), {}
    for variant in args.variants:
        if time.time() > deadline:
            runs.append({"variant": variant, "batch": args.batch, "skipped": "budget"})
            continue
        ckpt, compile_ = VARIANTS[variant]
        built = build(args, teacher, ckpt, compile_, device)
        if not compile_:  # compiled variants reuse the eager variant's largest batch (no recompile per probe)
            largest[ckpt] = largest_batch(args, built, variant, device, deadline)
        batches = sorted({args.batch, largest.get(ckpt) or args.batch})
        for batch in batches:
            if time.time() > deadline:
                runs.append({"variant": variant, "batch": batch, "skipped": "budget"})
                continue
            row = measure(args, built, variant, batch, device, flops)
            if batch == max(batches) and batch != args.batch:
                row["largest_fitting"] = True
            if peak and "step_s" in row and row.get("tflop_per_step"):  # model FLOPs / time / peak
                row["mfu"] = row["tflop_per_step"] / row["step_s"] / peak
            runs.append(row)
            print(json.dumps(row), flush=True)
            save(
                result, runs, args.out
            )  # after every row: a run killed at its time limit keeps what it measured
        del built
    save(result, runs, args.out)
    print(markdown(result))
    return result


def save(result: dict[str, Any], runs: list[dict[str, Any]], out: Path) -> None:
    result["runs"] = runs
    (out / "gpu_check.json").write_text(json.dumps(result, indent=1))
    (out / "gpu_check.md").write_text(markdown(result))


if __name__ == "__main__":
    main()
