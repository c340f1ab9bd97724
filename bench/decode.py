"""Clip decoding throughput: violetv2's planned decoder against two bare PyAV loops.

For mp4 files of several resolutions and keyframe spacings (written here with PyAV into a temp dir, 30 fps),
time one worker reading T-frame clips at 224 px (shorter side) with

- ``ours``: :func:`violetv2.data.video.read_clip`, keyframe index cached (steady state after the first epoch);
- ``ours-cold``: the same with the index cache cleared before every clip (first epoch);
- ``seek-each``: seek to every target frame, decode up to it;
- ``decode-all``: decode every frame up to the last target.

All three convert only the kept frames, with the same threading (``thread_type = "AUTO"``) and the same
training frame indices. Medians over ``--repeats`` clips; ratios are ours / baseline.

Usage::

    PYTHONPATH=src python bench/decode.py                 # default run, writes bench/results/decode.md
    PYTHONPATH=src python bench/decode.py --seconds 2 --repeats 3 --out /tmp/decode.md  # quicker

The pre-decoded JPEG-shard path (frames extracted once, read back per sample) is not measured here yet: add
it as another entry of ``METHODS`` that reads the same indices from a shard.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

from violetv2.data import video as video_mod
from violetv2.data.video import read_clip, sample_indices

SIZE = 224
RESOLUTIONS = {"240p": (320, 240), "360p": (640, 360), "720p": (1280, 720)}
GOPS = {"1 key/file": 100_000, "1 key/s": 30}


def write_mp4(path: Path, width: int, height: int, frames: int, gop: int) -> Path:
    """A textured pattern panning across the frame plus blocky changing grain (P-frames carry residuals)."""
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 255, (height // 8 + 1, width // 8 + 8, 3), dtype=np.uint8)
    texture = np.repeat(np.repeat(texture, 8, axis=0), 8, axis=1)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
        for i in range(frames):
            img = texture[:height, i % 64 : i % 64 + width].astype(np.int16)
            grain = rng.integers(
                -12, 12, (height // 8 + 1, width // 8 + 1, 1), dtype=np.int16
            )  # changing detail
            img += np.repeat(np.repeat(grain, 8, axis=0), 8, axis=1)[:height, :width]
            img = np.ascontiguousarray(img.clip(0, 255).astype(np.uint8))
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(stream.encode())
    return path


def _rgb(frame: av.VideoFrame) -> np.ndarray:
    scale = SIZE / min(frame.width, frame.height)
    return frame.reformat(round(frame.width * scale), round(frame.height * scale), "rgb24").to_ndarray()


def _open(path: Path) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    container = av.open(str(path))
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


def seek_each(path: Path, indices: list[int]) -> int:
    """Baseline (b): one seek per target frame, then decode up to it. Returns the frames decoded."""
    container, stream = _open(path)
    step = 1 / (stream.average_rate * stream.time_base)
    out, decoded = [], 0
    for i in indices:
        target = round(i * step)
        container.seek(target, stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            decoded += 1
            if frame.pts >= target:
                out.append(_rgb(frame))
                break
    container.close()
    return decoded


def decode_all(path: Path, indices: list[int]) -> int:
    """Baseline (c): decode every frame up to the last target, convert the kept ones. Returns frames decoded."""
    container, stream = _open(path)
    wanted, kept = set(indices), {}
    for n, frame in enumerate(container.decode(stream)):
        if n in wanted:
            kept[n] = _rgb(frame)
        if n >= indices[-1]:
            break
    container.close()
    return n + 1


class _CountingFrames(video_mod._Frames):
    """violetv2's frame iterator, counting the frames it makes the decoder produce (not used when timing)."""

    decoded = 0

    def _wrap(self) -> None:
        inner = self.frames

        def counted():
            for frame in inner:
                _CountingFrames.decoded += 1
                yield frame

        self.frames = counted()

    def seek(self, pts: int) -> None:
        super().seek(pts)
        self._wrap()

    def first_at_or_after(self, pts: int) -> av.VideoFrame | None:
        if self.frames is None:
            self.frames = self.container.decode(self.stream)
            self._wrap()
        return super().first_at_or_after(pts)


def ours(path: Path, indices: list[int], seed: int, t: int) -> int:
    clip = read_clip(path, t, train=True, rng=random.Random(seed), size=SIZE)
    assert clip.shape[0] == t
    return _CountingFrames.decoded


def ours_cold(path: Path, indices: list[int], seed: int, t: int) -> int:
    video_mod._INDEX_CACHE.clear()
    return ours(path, indices, seed, t)


def frames_decoded(fn: Callable, path: Path, t: int, frames: int, repeats: int) -> float:
    """Mean frames decoded per clip (deterministic: independent of machine load)."""
    counts = []
    original, video_mod._Frames = video_mod._Frames, _CountingFrames
    try:
        for seed in range(repeats):
            indices = sample_indices(frames, t, train=True, rng=random.Random(seed))[0]
            _CountingFrames.decoded = 0
            counts.append(fn(path, indices, seed, t))
    finally:
        video_mod._Frames = original
    return statistics.mean(counts)


COUNTED = ("ours", "seek-each", "decode-all")
METHODS: dict[str, Callable] = {
    "ours": ours,
    "ours-cold": ours_cold,
    "seek-each": lambda p, idx, seed, t: seek_each(p, idx),
    "decode-all": lambda p, idx, seed, t: decode_all(p, idx),
}


def clips_per_second(path: Path, t: int, frames: int, repeats: int) -> dict[str, float]:
    """Median clips/s per method; methods interleaved per clip so machine-load drift hits all alike."""
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    for seed in range(repeats):
        indices = sample_indices(frames, t, train=True, rng=random.Random(seed))[0]
        order = list(METHODS)[seed % len(METHODS) :] + list(METHODS)[: seed % len(METHODS)]
        for name in order:
            start = time.perf_counter()
            METHODS[name](path, indices, seed, t)
            times[name].append(time.perf_counter() - start)
    return {m: 1.0 / statistics.median(ts) for m, ts in times.items()}


def machine() -> str:
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?"
    )
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return f"{cpu}, nproc={nproc}, Python {platform.python_version()}, PyAV {av.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each generated file")
    parser.add_argument("--repeats", type=int, default=5, help="clips timed per cell (median)")
    parser.add_argument("--frames", type=int, nargs="+", default=[4, 5], help="T values")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "decode.md")
    args = parser.parse_args()
    frames = round(args.seconds * 30)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for res, (w, h) in RESOLUTIONS.items():
            for gop_name, gop in GOPS.items():
                path = write_mp4(Path(tmp) / f"{res}_{gop}.mp4", w, h, frames, gop)
                for t in args.frames:
                    ours(path, [], 0, t)  # warm the index cache
                    rates = clips_per_second(path, t, frames, args.repeats)
                    counts = {m: frames_decoded(METHODS[m], path, t, frames, args.repeats) for m in COUNTED}
                    rows.append((res, gop_name, t, rates, counts))
                    print(
                        res, gop_name, t, {k: round(v, 1) for k, v in rates.items()}, counts, file=sys.stderr
                    )
    write_table(args, rows, frames)


def write_table(args: argparse.Namespace, rows: list, frames: int) -> None:
    lines = [
        "# Clip decoding throughput (one worker)",
        "",
        f"Machine: {machine()}",
        "",
        f"Command: `PYTHONPATH=src python bench/decode.py --seconds {args.seconds} --repeats {args.repeats}"
        f" --frames {' '.join(map(str, args.frames))}`",
        "",
        f"mp4 (libx264 veryfast, 30 fps, {frames} frames), training sampling, {SIZE} px shorter side, clips/s "
        f"(median of {args.repeats}); ratios = ours / baseline.",
        "",
        "| file | keyframes | T | ours | ours-cold | seek-each | decode-all | ours / best | ours / worst "
        "| frames decoded per clip: ours / seek-each / decode-all |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for res, gop, t, r, n in rows:
        best, worst = max(r["seek-each"], r["decode-all"]), min(r["seek-each"], r["decode-all"])
        lines.append(
            f"| {res} | {gop} | {t} | {r['ours']:.1f} | {r['ours-cold']:.1f} | {r['seek-each']:.1f} | "
            f"{r['decode-all']:.1f} | {r['ours'] / best:.2f} | {r['ours'] / worst:.2f} "
            f"| {n['ours']:.1f} / {n['seek-each']:.1f} / {n['decode-all']:.1f} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
