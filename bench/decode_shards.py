"""Streaming-shard throughput: the pre-decoded JPEG shard path against mp4 (bytes shards and plain files).

For ``--clips`` mp4 files (libx264, 30 fps, written with ``bench/decode.py``'s ``write_mp4``) time one
worker (``num_workers=0``, one process) producing training samples of T frames at 224 px through the full
pipeline (decode, random crop, normalisation, tokenisation, collate) with

- ``mp4 files``: :class:`~violetv2.data.dataset.VideoTextDataset` reading the files (map-style path);
- ``mp4 shards``: :class:`~violetv2.data.shards.ShardedVideoTextDataset` over ``mode="bytes"`` shards;
- ``jpeg shards``: the same over ``mode="jpeg"`` shards (T frames pre-decoded at 224 px, stored as MJPEG).

Reported: clips/s (median of ``--repeats`` passes over all clips; the first, warm-up pass is dropped), and
the shard bytes per clip.

Usage::

    PYTHONPATH=src python bench/decode_shards.py              # writes bench/results/decode_shards.md
    PYTHONPATH=src python bench/decode_shards.py --clips 8 --repeats 2 --out /tmp/shards.md
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av

sys.path.insert(0, str(Path(__file__).parent))
from decode import RESOLUTIONS, write_mp4  # noqa: E402

from violetv2.data.dataset import VideoTextDataset, collate  # noqa: E402
from violetv2.data.records import Record  # noqa: E402
from violetv2.data.shards import ShardedVideoTextDataset, ShardIndex, ShardLoader, write_shards  # noqa: E402
from violetv2.data.synthetic import build_tokenizer  # noqa: E402
from violetv2.data.text import load_tokenizer  # noqa: E402

SIZE = 224


def _machine() -> str:
    try:
        cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in cpu.splitlines() if "Model name" in line)
    except (OSError, StopIteration):
        model = platform.processor() or "unknown CPU"
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return f"{model}, nproc={nproc}, Python {platform.python_version()}, PyAV {av.__version__}"


def _rate(run, clips: int, repeats: int) -> float:
    run()  # warm-up (index cache, tokenizer, allocator)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return clips / statistics.median(times)


def bench(resolution: str, clips: int, frames: int, seconds: float, repeats: int, tmp: Path) -> dict:
    width, height = RESOLUTIONS[resolution]
    videos = tmp / resolution
    videos.mkdir()
    records = []
    for i in range(clips):
        write_mp4(videos / f"{i}.mp4", width, height, int(30 * seconds), 30)
        records.append(Record(str(i), f"{i}.mp4", f"clip number {i} of a panning texture"))
    tokenizer_dir = tmp / "tokenizer"
    if not tokenizer_dir.exists():
        build_tokenizer([r.text for r in records], tokenizer_dir, answers=[])
    tok = load_tokenizer(str(tokenizer_dir))
    kw = {"num_frames": frames, "image_size": SIZE, "max_text_len": 32}
    for mode in ("bytes", "jpeg"):
        write_shards(
            records, videos, tmp / f"{resolution}-{mode}", mode=mode, num_frames=frames, image_size=SIZE
        )
    mapped = VideoTextDataset(records, videos, tok, train=True, **kw)

    def files() -> None:
        for i in range(0, clips, 4):
            collate([mapped[j] for j in range(i, min(i + 4, clips))])

    def shards(mode: str):
        loader = ShardLoader(ShardedVideoTextDataset(tmp / f"{resolution}-{mode}", tok, batch_size=4, **kw))
        return lambda: sum(1 for _ in loader)

    size = {m: _bytes_per_clip(tmp / f"{resolution}-{m}") for m in ("bytes", "jpeg")}
    return {
        "mp4 files": _rate(files, clips, repeats),
        "mp4 shards": _rate(shards("bytes"), clips, repeats),
        "jpeg shards": _rate(shards("jpeg"), clips, repeats),
        "kB/clip mp4": size["bytes"] / 1e3,
        "kB/clip jpeg": size["jpeg"] / 1e3,
    }


def _bytes_per_clip(directory: Path) -> float:
    index = ShardIndex.load(directory)
    return sum((directory / name).stat().st_size for name, _ in index.shards) / index.total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=16, help="clips per resolution")
    parser.add_argument("--frames", type=int, default=4, help="T")
    parser.add_argument("--seconds", type=float, default=4.0, help="mp4 length")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes (median)")
    parser.add_argument("--resolutions", nargs="+", default=["360p", "720p"], choices=sorted(RESOLUTIONS))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "decode_shards.md")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for resolution in args.resolutions:
            r = bench(resolution, args.clips, args.frames, args.seconds, args.repeats, Path(tmp))
            speedup = r["jpeg shards"] / r["mp4 shards"]
            cells = [f"{r[k]:.1f}" for k in ("mp4 files", "mp4 shards", "jpeg shards")]
            rows.append(
                f"| {resolution} | {args.frames} | {' | '.join(cells)} | {speedup:.1f}x "
                f"| {r['kB/clip mp4']:.0f} | {r['kB/clip jpeg']:.0f} |"
            )
            print(rows[-1], flush=True)
    command = "PYTHONPATH=src python bench/decode_shards.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    text = "\n".join(
        [
            "# Streaming shards: pre-decoded JPEG path vs mp4 (one worker)",
            "",
            f"Machine: {_machine()}",
            "",
            f"Command: `{command.strip()}`",
            "",
            f"{args.clips} mp4 clips per row (libx264 veryfast, 30 fps, {args.seconds:g} s, 1 keyframe/s), training "
            f"samples of T frames at {SIZE} px through decode + random crop + normalise + tokenise + collate, "
            f"batch 4, num_workers=0; clips/s, median of {args.repeats} passes after a warm-up pass.",
            "",
            "| source | T | mp4 files | mp4 shards | jpeg shards | jpeg / mp4 shards | kB/clip mp4 | kB/clip jpeg |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    args.out.write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
