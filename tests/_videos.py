"""Tiny test media written with PyAV (shared by test_video / test_transforms / test_dataset; not a test file).

Frame ``i`` of every generated video is a flat colour with red = ``8 * i`` (so a decoded frame tells its own
index: ``frame_index(pixel)``) and a bright green 12x12 square in its top-left corner (shows rotation).
Files are written once per session under pytest's base temp dir.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

WIDTH, HEIGHT = 64, 48
RED_STEP = 8


def frame_image(i: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """RGB ``[h, w, 3]`` uint8 of frame ``i``."""
    img = np.zeros((height, width, 3), np.uint8)
    img[..., 0] = (RED_STEP * i) % 256
    img[..., 2] = 60
    img[:12, :12, 1] = 255
    return img


def frame_index(red: float) -> int:
    """Frame index encoded by a decoded red value (robust to compression noise of a few levels)."""
    return round(float(red) / RED_STEP)


def write_video(
    path: Path,
    num_frames: int,
    *,
    fps: int | Fraction = 15,
    codec: str = "libx264",
    gop: int | None = None,
    bframes: int = 0,
    rotation: int | None = None,
    vfr: bool = False,
    fmt: str | None = None,
    container_options: dict[str, str] | None = None,
    size: tuple[int, int] = (WIDTH, HEIGHT),
) -> Path:
    """Encode ``num_frames`` frames of :func:`frame_image` to ``path``."""
    width, height = size
    with av.open(str(path), "w", format=fmt, options=container_options or {}) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            opts = {"preset": "ultrafast" if not bframes else "fast", "crf": "8", "bf": str(bframes)}
            if gop:
                opts |= {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
            stream.options = opts
        else:
            stream.codec_context.bit_rate = 4_000_000  # near-lossless: decoded colours identify frames
            if gop:
                stream.codec_context.gop_size = gop
        if rotation is not None:
            stream.set_display_rotation(rotation)
        if vfr:
            stream.codec_context.time_base = Fraction(1, 1000)
        t = 0
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(frame_image(i, width, height), format="rgb24")
            if vfr:  # alternating 30 ms / 90 ms frame durations
                frame.pts, frame.time_base = t, Fraction(1, 1000)
                t += 30 if i % 2 else 90
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def _make_all(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    v: dict[str, Path] = {}
    v["sparse"] = write_video(root / "sparse.mp4", 30, gop=1000)  # one keyframe
    v["dense"] = write_video(root / "dense.mp4", 30, gop=15)  # a keyframe per second
    v["bframes"] = write_video(root / "bframes.mp4", 30, gop=10, bframes=2)
    v["fractional"] = write_video(root / "fractional.mp4", 24, fps=Fraction(30000, 1001))
    v["vfr"] = write_video(root / "vfr.mp4", 24, vfr=True)
    v["rotated"] = write_video(root / "rotated.mp4", 10, rotation=90)
    v["short"] = write_video(root / "short.mp4", 3)
    v["avi"] = write_video(root / "mpeg4.avi", 20, codec="mpeg4", gop=5)
    v["mkv"] = write_video(root / "clip.mkv", 20, gop=5)
    v["raw_h264"] = write_video(root / "stream.h264", 20, gop=5, fmt="h264")  # no timestamps, no duration
    v["hd"] = write_video(root / "wide.mp4", 6, size=(128, 64))
    for ext in ("png", "jpg"):
        av.VideoFrame.from_ndarray(frame_image(3), format="rgb24").save(str(root / f"image.{ext}"))
        v[ext] = root / f"image.{ext}"
    v.update(_make_broken(root))
    return v


def _make_broken(root: Path) -> dict[str, Path]:
    v: dict[str, Path] = {}
    v["zero"] = root / "zero.mp4"
    v["zero"].write_bytes(b"")
    v["text"] = root / "notes.mp4"
    v["text"].write_text("this is a text file, not a video\n" * 20)
    full = write_video(root / "_full.mp4", 30, gop=5).read_bytes()  # moov after mdat: cut loses the index
    v["truncated"] = root / "truncated.mp4"
    v["truncated"].write_bytes(full[: len(full) // 2])
    fast = write_video(
        root / "_fast.mp4", 30, gop=5, container_options={"movflags": "faststart"}
    ).read_bytes()
    v["truncated_faststart"] = root / "truncated_faststart.mp4"  # index intact, frame data cut
    v["truncated_faststart"].write_bytes(fast[: int(len(fast) * 0.6)])
    v["missing"] = root / "does_not_exist.mp4"
    return v


_CACHE: dict[Path, dict[str, Path]] = {}


def make_videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """All test media, written on first call in this session (name -> path)."""
    root = tmp_path_factory.getbasetemp() / "violet_test_videos"
    if root not in _CACHE:
        _CACHE[root] = _make_all(root)
    return _CACHE[root]


def make_tokenizer(directory: Path, words: list[str] | None = None):
    """A tiny BERT word-piece tokenizer saved to ``directory`` (loadable with ``load_tokenizer``)."""
    from transformers import BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = (
        words
        or (
            "a man is playing guitar dog cat runs what the answer : ? . , woman she he does do with "
            "skate ##board ##ing red car drives yes no"
        ).split()
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(specials + words) + "\n")
    tokenizer = BertTokenizerFast(
        str(directory / "vocab.txt")
    )  # positional: `vocab_file` (v4) / `vocab` (v5)
    tokenizer.save_pretrained(str(directory))
    return tokenizer
