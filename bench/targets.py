"""Per-frame cost of every MVM target at 224 px, and our batched HOG against scikit-image.

Teachers are built with random weights from configs of the real architecture sizes (no download):
Swin-B in22k (SIF), CLIP ViT-B/32, DPT-Large, the FLAVA dVAE codebook, Perceiver IO optical flow
(368x496), Video Swin-B. Usage::

    PYTHONPATH=src python bench/targets.py                     # CPU (and GPU when present), writes the md
    PYTHONPATH=src python bench/targets.py --skip flow,depth --repeats 5
    PYTHONPATH=src python bench/targets.py --step-overhead          # training step per target, tiny preset
    PYTHONPATH=src python bench/targets.py --step-overhead --base   # ... and violetv2-base (+6 min CPU)

``--step-overhead`` times one full pre-training step (``PretrainModule.pretrain_losses`` forward, backward,
AdamW step) with each target alone, one subprocess per (preset, target) so that memory stays bounded, and
writes the section "Training-step overhead per target" of the results file (the other sections are kept).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from violetv2.mvm import hog
from violetv2.mvm.targets import TARGETS, MVMTarget
from violetv2.mvm.teachers import freeze, swin_base_in22k_config

if TYPE_CHECKING:
    from violetv2.data.batch import VideoTextBatch
    from violetv2.tasks.pretrain import PretrainModule

HEAVY = {"depth", "flow", "vidswin"}


def _teacher(name: str) -> torch.nn.Module | None:
    """A random-weight teacher of the real size (``None`` for teacher-free targets)."""
    import transformers as tf

    if name == "sif":
        return tf.SwinModel(swin_base_in22k_config(), add_pooling_layer=False)
    if name == "clip":
        return tf.CLIPVisionModel(tf.CLIPVisionConfig(patch_size=32))  # ViT-B/32 defaults otherwise
    if name == "depth":
        return tf.DPTForDepthEstimation(tf.DPTConfig())  # DPTConfig defaults = DPT-Large (ViT-L/16, 384)
    if name == "vq":
        return tf.FlavaImageCodebook(tf.FlavaImageCodebookConfig())  # 8192 codes, hidden 256
    if name == "flow":
        return tf.PerceiverForOpticalFlow(
            tf.PerceiverConfig(
                num_latents=2048,
                d_latents=512,
                d_model=322,
                num_blocks=1,
                num_self_attends_per_block=24,
                num_self_attention_heads=16,
                num_cross_attention_heads=1,
                cross_attention_widening_factor=1,
                self_attention_widening_factor=1,
                train_size=[368, 496],
            )  # fmt: skip
        )
    if name == "vidswin":
        from violetv2.models.video_swin import VideoSwin

        return VideoSwin(drop_path=0.0)
    return None


def _target(name: str, device: str) -> MVMTarget:
    target = TARGETS[name]()
    teacher = _teacher(name)
    if teacher is not None:
        target._teacher = freeze(teacher).to(device)  # inject: the bench measures compute, not loading
    return target


def _time(fn: Callable[[], object], repeats: int, device: str, warmup: bool = True) -> float:
    """Median seconds of ``fn`` over ``repeats`` runs (after one warm-up run unless ``warmup=False``)."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_targets(device: str, frames: int, repeats: int, skip: set[str]) -> list[tuple[str, float]]:
    video = torch.randn(1, frames, 3, 224, 224, device=device)
    rows = []
    for name in TARGETS:
        if name in skip:
            continue
        target = _target(name, device)
        clip = video[:, :2] if name == "flow" else video  # flow: one pair of frames (~30 s on 2 CPU cores)
        heavy = name in HEAVY
        seconds = _time(lambda t=target, v=clip: t.compute(v), 1 if heavy else repeats, device, not heavy)
        rows.append((name, 1000 * seconds / clip.shape[1]))
        print(f"{device} {name:8s} {rows[-1][1]:9.1f} ms/frame", flush=True)
        target.teardown()
    return rows


def _frames(n: int) -> np.ndarray:
    """``n`` real grayscale 224x224 frames cropped from scikit-image's sample photos."""
    from skimage import color, data

    photos = [color.rgb2gray(data.astronaut()), color.rgb2gray(data.chelsea()), color.rgb2gray(data.coffee())]
    out = []
    for i in range(n):
        img = photos[i % len(photos)]
        r, c = (7 * i) % (img.shape[0] - 224), (13 * i) % (img.shape[1] - 224)
        out.append(img[r : r + 224, c : c + 224])
    return np.stack(out).astype(np.float32)


def bench_hog(n: int, repeats: int) -> list[tuple[str, float, float]]:
    """(setting, skimage ms/frame, ours ms/frame) on the same frames (median over frames / repeats)."""
    from skimage.feature import hog as sk_hog

    frames = _frames(n)
    batch = torch.from_numpy(frames)[:, None]
    kw = {"orientations": 9, "pixels_per_cell": (8, 8), "cells_per_block": (1, 1), "block_norm": "L2"}
    rows = []
    settings = [
        ("descriptor", lambda f: sk_hog(f, feature_vector=False, **kw), hog.skimage_hog),
        ("visualisation", lambda f: sk_hog(f, visualize=True, **kw), hog.hog_visualisation),
    ]
    threads = torch.get_num_threads()
    for setting, sk_fn, ours_fn in settings:
        sk = statistics.median(_time(lambda f=f, fn=sk_fn: fn(f), 1, "cpu") for f in frames)
        ours = _time(lambda fn=ours_fn: fn(batch), repeats, "cpu") / n
        torch.set_num_threads(1)
        ours_1 = _time(lambda fn=ours_fn: fn(batch), repeats, "cpu") / n
        torch.set_num_threads(threads)
        rows.append((setting, 1000 * sk, 1000 * ours, 1000 * ours_1))
        print(
            f"hog {setting}: skimage {1000 * sk:.2f}, ours {1000 * ours:.3f} ({1000 * ours_1:.3f} 1 thread) ms/frame"
        )
    rgb = batch.expand(-1, 3, -1, -1).contiguous()
    ours = _time(lambda: hog.maskfeat_hog(rgb), repeats, "cpu") / n
    rows.append(("maskfeat rgb (no skimage equivalent)", float("nan"), 1000 * ours, float("nan")))
    return rows


def _machine() -> str:
    try:
        cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(
            (ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if ln.startswith("Model name")), "?"
        )
    except OSError:
        model = platform.processor() or "?"
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"CPU {model} ({os.cpu_count()} cores, load average {load} at the end), torch threads "
        f"{torch.get_num_threads()}, GPU {gpu}; python {platform.python_version()}, torch {torch.__version__}"
    )


def write_markdown(path: Path, command: str, target_rows: dict[str, list], hog_rows: list) -> None:
    lines = [
        "# MVM targets: per-frame cost at 224 px",
        "",
        f"Machine: {_machine()}",
        "",
        f"Command: `{command}`",
        "",
    ]
    lines += [
        "Random-weight teachers of the real sizes (no download); `compute()` on a 1 x T x 3 x 224 x 224 clip,",
        "median, divided by T. Flow runs on a 2-frame clip (one pair, divided by 2: per pair it is twice the",
        "figure). Heavy teachers (depth, flow, vidswin) are timed once, without warm-up.",
        "",
    ]
    devices = list(target_rows)
    lines += ["| target | " + " | ".join(f"{d} ms/frame" for d in devices) + " |"]
    lines += ["|---|" + "---|" * len(devices)]
    for i, (name, _) in enumerate(target_rows[devices[0]]):
        lines.append(f"| {name} | " + " | ".join(f"{target_rows[d][i][1]:.1f}" for d in devices) + " |")
    lines += ["", "## HOG: ours (batched torch, CPU) vs `skimage.feature.hog` (per frame, CPU)", ""]
    lines += [
        f"| setting | skimage ms/frame | ours ms/frame ({torch.get_num_threads()} threads) | speed-up "
        "| ours ms/frame (1 thread) | speed-up (1 thread) |",
        "|---|---|---|---|---|---|",
    ]
    for setting, sk, ours, ours_1 in hog_rows:
        if np.isnan(sk):
            lines.append(f"| {setting} | - | {ours:.3f} | - | - | - |")
        else:
            lines.append(
                f"| {setting} | {sk:.2f} | {ours:.3f} | {sk / ours:.1f}x | {ours_1:.3f} | {sk / ours_1:.1f}x |"
            )
    lines += [
        "",
        "Settings: 9 orientations, 8x8 cells, block 1x1, L2; grayscale 224x224 float32 frames cropped from",
        "scikit-image's sample photos; ours runs the whole batch of frames in one call.",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_text() if path.exists() else ""
    kept = _section(old, STEP_TITLE)  # a rerun of the per-frame bench keeps the step-overhead section
    path.write_text("\n".join(lines) + (f"\n{kept}" if kept else ""))


# ------------------------------------------------------------------------------ training-step overhead

STEP_TITLE = "## Training-step overhead per target"
# preset -> (frame side, batch, warm-up steps, timed steps)
STEP_SETUPS = {"tiny": (64, 4, 1, 3), "violetv2-base": (224, 1, 1, 1)}
STEP_FRAMES = 4
TEXT_LEN = 32  # published pre-training text length
# Flow in the tiny preset: the Perceiver always runs at 368x496, so b=4, T=4 is 12 pairs (~400 s a step on
# 2 CPU cores); it is left out of the tiny run unless --tiny-flow is given (the base run has 3 pairs).
TINY_SKIP = {"flow"}


def _step_batch(b: int, t: int, size: int, vocab: int) -> VideoTextBatch:
    """A hand-built pre-training batch: random frames, ``[CLS] w1 .. wn [SEP] [PAD]..`` of ``TEXT_LEN``."""
    from violetv2.data.batch import VideoTextBatch

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, vocab, (b, TEXT_LEN), generator=g)
    lengths = torch.randint(TEXT_LEN // 2, TEXT_LEN, (b,), generator=g)
    pos = torch.arange(TEXT_LEN)
    ids[:, 0] = 101  # [CLS]
    ids[pos[None] == lengths[:, None]] = 102  # [SEP]
    ids[pos[None] > lengths[:, None]] = 0  # [PAD]
    video = torch.randn(b, t, 3, size, size, generator=g)
    return VideoTextBatch(video=video, text_ids=ids, text_mask=(ids != 0).long())


def _step_module(preset: str, name: str) -> PretrainModule:
    """``PretrainModule`` with the single target ``name`` and its random-weight real-size teacher injected."""
    from violetv2.tasks.pretrain import PretrainModule

    widths = {"sif": {"feature_dim": 1024}, "clip": {"feature_dim": 768}}  # heads built without a config
    torch.manual_seed(0)
    module = PretrainModule(
        preset=preset,
        mvm_targets={name: 1.0},
        mvm_target_options={name: widths[name]} if name in widths else None,
    )
    teacher = _teacher(name)
    if teacher is not None:
        module.mvm_targets[name]._teacher = freeze(teacher)  # the bench measures compute, not loading
    return module.train()


def time_step(preset: str, name: str) -> dict[str, Any]:
    """Seconds of each timed training step (forward + backward + AdamW) and of its target computation."""
    from violetv2.tasks.base import param_groups

    size, b, warmup, timed = STEP_SETUPS[preset]
    module = _step_module(preset, name)
    batch = _step_batch(b, STEP_FRAMES, size, module.cfg.vocab_size)
    opt = torch.optim.AdamW(param_groups(module, 1e-3, 5e-5), lr=5e-5, betas=(0.9, 0.98), weight_decay=1e-3)
    compute, spent = module.mvm_targets.compute, []

    def timed_compute(video: torch.Tensor) -> dict[str, torch.Tensor]:
        start = time.perf_counter()
        out = compute(video)
        spent.append(time.perf_counter() - start)
        return out

    module.mvm_targets.compute = timed_compute
    steps = []
    for _ in range(warmup + timed):
        start = time.perf_counter()
        out = module.pretrain_losses(batch)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        steps.append(time.perf_counter() - start)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    return {"step": steps[warmup:], "compute": spent[warmup:], "rss_gib": rss}


def _run_one(preset: str, name: str) -> dict[str, Any]:
    """``time_step`` in a fresh interpreter (the base model plus a DPT-Large teacher takes several GB)."""
    start = time.perf_counter()
    cmd = [sys.executable, __file__, "--step-one", f"{preset}:{name}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
    if proc.returncode:  # reported in the table (e.g. a teacher that cannot run at the preset's frame size)
        print(proc.stderr[-3000:], file=sys.stderr)
        return {"error": proc.stderr.strip().splitlines()[-1], "wall": time.perf_counter() - start}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall"] = time.perf_counter() - start
    return result


def bench_steps(presets: list[str], tiny_flow: bool) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """``{preset: [(target, time_step result + wall seconds), ...]}``, every target alone, pixel first."""
    rows: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for preset in presets:
        skip = TINY_SKIP if preset == "tiny" and not tiny_flow else set()
        rows[preset] = []
        for name in (n for n in TARGETS if n not in skip):
            r = _run_one(preset, name)
            rows[preset].append((name, r))
            if "error" in r:
                print(f"{preset} {name:8s} FAILED: {r['error']}", flush=True)
                continue
            print(
                f"{preset} {name:8s} step {1000 * statistics.median(r['step']):9.1f} ms, target "
                f"{1000 * statistics.median(r['compute']):9.1f} ms, {r['wall']:.0f} s wall",
                flush=True,
            )
    return rows


def _section(text: str, title: str) -> str:
    """The markdown section starting at the line ``title`` up to the next ``## `` heading ('' if absent)."""
    match = re.search(rf"^{re.escape(title)}\n.*?(?=^## |\Z)", text, flags=re.M | re.S)
    return match.group(0) if match else ""


def _step_table(preset: str, rows: list[tuple[str, dict[str, Any]]], skipped: set[str]) -> list[str]:
    size, b, warmup, timed = STEP_SETUPS[preset]
    wall = sum(r["wall"] for _, r in rows)
    lines = [
        f"### `{preset}`: {size} px, batch {b}, T={STEP_FRAMES}, text {TEXT_LEN} tokens; {warmup} warm-up + "
        f"{timed} timed step(s) per target; {wall / 60:.1f} min wall in all",
        "",
        "| target | step ms | overhead ms vs pixel | ratio | of which target compute ms | peak RSS GiB |",
        "|---|---|---|---|---|---|",
    ]
    results = dict(rows)
    base = statistics.median(results["pixel"]["step"])
    for name in TARGETS:
        if name in skipped:
            lines.append(f"| {name} | not run | - | - | - | - |")
            continue
        r = results[name]
        if "error" in r:
            lines.append(f"| {name} | failed: `{r['error'][:160]}` | - | - | - | - |")
            continue
        step = statistics.median(r["step"])
        lines.append(
            f"| {name} | {1000 * step:.0f} | {1000 * (step - base):+.0f} | {step / base:.2f} "
            f"| {1000 * statistics.median(r['compute']):.0f} | {r['rss_gib']:.1f} |"
        )
    return lines + [""]


def write_step_section(path: Path, command: str, rows: dict[str, list], tiny_flow: bool) -> None:
    """Replace (or append) the "Training-step overhead per target" section of ``path``."""
    lines = [
        STEP_TITLE,
        "",
        f"Machine: {_machine()}",
        "",
        f"Command: `{command}`",
        "",
        "One training step = `PretrainModule.pretrain_losses(batch)` (MVM targets from the unmasked clip, the",
        "patch mask, VTM with 3 in-batch negatives when b > 1, MLM + MVM on the masked clip) + backward + AdamW",
        "step, with one MVM target alone (weight 1; masking random + blockwise, ratio 0.15, the defaults).",
        "Random weights, real-size teachers built from configs as above (injected, no loading time), float32,",
        "median over the timed steps, each (preset, target) in its own process. `pixel` needs no teacher (its",
        "target is the clip itself), so it is the baseline: overhead = step(target) - step(pixel), ratio =",
        "step(target) / step(pixel). 'Target compute' is the time inside `MVMTargets.compute` (teacher forward",
        "under `no_grad`); the rest of the overhead is the head, the loss and their backward (the VQ head's",
        "8192-way logits per 8x8 cell, the flow head on frame pairs with 2x width).",
        "",
    ]
    for preset, preset_rows in rows.items():
        skipped = TINY_SKIP if preset == "tiny" and not tiny_flow else set()
        lines += _step_table(preset, preset_rows, skipped)
    if "violetv2-base" not in rows:
        lines += [
            "`violetv2-base` (224 px, batch 1) is only run with `--base`: on 2 CPU cores that adds about",
            "6-7 min (a base step is 5-8 s; the flow teacher alone is ~100 s a step for its 3 pairs).",
            "",
        ]
    if not tiny_flow and "tiny" in rows:
        lines += [
            "Flow is not run in the tiny preset by default: the Perceiver IO teacher only runs at its training",
            "size (368x496), so b=4, T=4 means 12 frame pairs, about 400 s a step on 2 CPU cores",
            "(`--tiny-flow` runs it anyway).",
            "",
        ]
    section = "\n".join(lines)
    old = path.read_text() if path.exists() else ""
    current = _section(old, STEP_TITLE)
    new = old.replace(current, section) if current else old.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=4, help="frames per clip")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of the light targets")
    p.add_argument("--hog-frames", type=int, default=16, help="frames of the HOG comparison")
    p.add_argument("--skip", default="", help="comma-separated target names to leave out")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "targets.md")
    p.add_argument("--step-overhead", action="store_true", help="time a training step per target instead")
    p.add_argument("--base", action="store_true", help="with --step-overhead: also violetv2-base (slow)")
    p.add_argument("--tiny-flow", action="store_true", help="with --step-overhead: run flow in tiny too")
    p.add_argument("--step-one", default=None, help=argparse.SUPPRESS)  # PRESET:TARGET, child process
    args = p.parse_args()
    if args.step_one or args.step_overhead:
        torch.set_num_threads(2)
    if args.step_one:
        print(json.dumps(time_step(*args.step_one.split(":"))))
        return
    command = ("PYTHONPATH=src python bench/targets.py " + " ".join(sys.argv[1:])).strip()
    if args.step_overhead:
        rows = bench_steps(["tiny"] + (["violetv2-base"] if args.base else []), args.tiny_flow)
        write_step_section(args.out, command, rows, args.tiny_flow)
        print(f"wrote {args.out}")
        return
    torch.manual_seed(0)
    skip = {s for s in args.skip.split(",") if s}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    with torch.inference_mode():
        rows = {d: bench_targets(d, args.frames, args.repeats, skip) for d in devices}
        hog_rows = bench_hog(args.hog_frames, max(args.repeats, 5))
    write_markdown(args.out, command, rows, hog_rows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
