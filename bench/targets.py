"""Per-frame cost of every MVM target at 224 px, and our batched HOG against scikit-image.

Teachers are built with random weights from configs of the real architecture sizes (no download):
Swin-B in22k (SIF), CLIP ViT-B/32, DPT-Large, the FLAVA dVAE codebook, Perceiver IO optical flow
(368x496), Video Swin-B. Usage::

    PYTHONPATH=src python bench/targets.py                     # CPU (and GPU when present), writes the md
    PYTHONPATH=src python bench/targets.py --skip flow,depth --repeats 5
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from violetv2.mvm import hog
from violetv2.mvm.targets import TARGETS, MVMTarget
from violetv2.mvm.teachers import freeze, swin_base_in22k_config

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
    path.write_text("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=4, help="frames per clip")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of the light targets")
    p.add_argument("--hog-frames", type=int, default=16, help="frames of the HOG comparison")
    p.add_argument("--skip", default="", help="comma-separated target names to leave out")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "targets.md")
    args = p.parse_args()
    torch.manual_seed(0)
    skip = {s for s in args.skip.split(",") if s}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    with torch.inference_mode():
        rows = {d: bench_targets(d, args.frames, args.repeats, skip) for d in devices}
        hog_rows = bench_hog(args.hog_frames, max(args.repeats, 5))
    command = "PYTHONPATH=src python bench/targets.py " + " ".join(sys.argv[1:])
    write_markdown(args.out, command.strip(), rows, hog_rows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
