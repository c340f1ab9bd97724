"""Video decoding with PyAV and the published sparse frame sampling.

What happens in :func:`read_clips`:

1. **Index** the video stream by demuxing its packets without decoding (cheap: no pixel work) to get the
   presentation timestamp of every frame and of every keyframe. The index is cached per file (path, size and
   mtime), so later epochs skip this step. Frame counts therefore never depend on duration / frame-rate
   metadata, which is missing or wrong in many files (variable frame rate, fractional rates, GIFs).
2. **Sample** frame indices with :func:`sample_indices` (a pure function on frame counts).
3. **Plan** with :func:`plan_seeks`: walk the sorted target frames and seek only when a keyframe lies between
   the decoder's position and the next target; otherwise keep decoding forward. With one keyframe per file this
   decodes each frame at most once (a seek per target would re-decode from frame 0 every time); with dense
   keyframes it skips the frames between targets (decoding everything would waste that work).
4. **Decode** with frame/slice threading and convert (scale + RGB) only the frames kept.

Still images (jpg / png / ...) go through FFmpeg's image demuxers and come back as 1-frame clips; asking for
``T`` frames repeats the only one. Rotation metadata (display matrix) is applied to the output.

Hook for pre-decoded frames: a JPEG-shard reader (frames already extracted per sample) should produce the same
``uint8 [t, c, h, w]`` layout as :func:`read_clip` and reuse :func:`sample_indices`; the dataset calls one
method (:meth:`violetv2.data.dataset.VideoTextDataset.load_clip`) that such a reader replaces.
"""

from __future__ import annotations

import io
import logging
import math
import os
import random
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import av
import numpy as np
import torch
from einops import rearrange
from torch import Tensor

__all__ = [
    "ClipIndex",
    "VideoDecodeError",
    "index_video",
    "plan_seeks",
    "read_clip",
    "read_clips",
    "release_indices",
    "sample_indices",
]

log = logging.getLogger(__name__)

Source = str | os.PathLike | bytes
_INDEX_CACHE: OrderedDict[tuple, ClipIndex] = OrderedDict()
_INDEX_CACHE_SIZE = 8192
SEEK_THRESHOLD = 8
"""Default ``min_skip`` of :func:`plan_seeks` (frames); see ``bench/decode.py`` for its effect."""


class VideoDecodeError(RuntimeError):
    """A video (or image) could not be read: missing, empty, truncated, corrupt or not a video.

    Attributes:
        path: The file at fault (``"<bytes>"`` for in-memory sources).
        reason: What went wrong, in words.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"cannot decode video {path!r}: {reason}")


class _Truncated(Exception):
    pass


# ---------------------------------------------------------------------------------------------- sampling


Sampling = Literal["release", "segments"]
"""Frame sampling rules: ``"release"`` (VIOLETv2's stride rule) or ``"segments"`` (TSN-style segments)."""
NumClips = int | Literal["all"]
"""Clips per video: a count, or ``"all"`` for the release's multi-clip testing (``ceil(N / T)`` clips)."""


def sample_indices(
    num_frames: int,
    num_samples: int,
    *,
    train: bool,
    rng: random.Random | None = None,
    num_clips: NumClips = 1,
    sampling: Sampling = "segments",
    stored_frames: int | None = None,
) -> list[list[int]]:
    """Sparse sampling: ``num_samples`` frames spread over a clip of ``num_frames`` frames.

    ``sampling="segments"``: the clip is cut into ``num_samples`` equal segments and one frame is taken from
    each: a uniformly random frame in training, the segment centre in evaluation. With ``num_clips > 1``
    clip ``k`` takes the frame at fraction ``(k + 0.5) / num_clips`` of every segment.

    ``sampling="release"``: see :func:`release_indices` (VIOLETv2's rule, evenly spaced rounded frames).

    Clips shorter than ``num_samples`` frames take every frame and repeat the last one (the release would
    return fewer frames than asked).

    Args:
        num_frames: Frames in the clip (after trimming), ``N``.
        num_samples: Frames wanted per clip, ``T``.
        train: Random draws (True) or deterministic positions (False).
        rng: Random source for training (a fresh unseeded one when None).
        num_clips: Clips to sample (test-time averaging); ``"all"`` only with ``sampling="release"``.
        sampling: ``"segments"`` or ``"release"``.
        stored_frames: Emulate a frame store holding this many frames per video (the release samples from
            pre-extracted frames): first keep ``stored_frames`` evenly spaced frames (rounded, first and last
            included), then sample among them. None (or more than ``num_frames``): every frame counts.

    Returns:
        Lists of ``num_samples`` sorted frame indices in ``[0, num_frames)``, one per clip.
    """
    if stored_frames is not None and 1 <= stored_frames < num_frames:
        kept = _evenly(0, num_frames - 1, stored_frames)
        clips = sample_indices(
            stored_frames, num_samples, train=train, rng=rng, num_clips=num_clips, sampling=sampling
        )
        return [[kept[i] for i in clip] for clip in clips]
    if sampling == "release":
        return release_indices(num_frames, num_samples, train=train, rng=rng, num_clips=num_clips)
    if sampling != "segments" or num_clips == "all":
        raise ValueError(
            "sampling must be 'segments' or 'release' (num_clips='all' needs 'release'), "
            f"got sampling={sampling!r}, num_clips={num_clips!r}"
        )
    _check_counts(num_frames, num_samples, num_clips)
    if num_frames < num_samples:
        return [_short(num_frames, num_samples) for _ in range(num_clips)]
    bounds = [
        (i * num_frames // num_samples, (i + 1) * num_frames // num_samples) for i in range(num_samples)
    ]
    if train:
        rng = rng or random.Random()
        return [[rng.randrange(lo, hi) for lo, hi in bounds] for _ in range(num_clips)]
    return [[lo + (2 * k + 1) * (hi - lo) // (2 * num_clips) for lo, hi in bounds] for k in range(num_clips)]


def _check_counts(num_frames: int, num_samples: int, num_clips: NumClips) -> None:
    clips_ok = num_clips == "all" or (isinstance(num_clips, int) and num_clips >= 1)
    if num_frames < 1 or num_samples < 1 or not clips_ok:
        raise ValueError(
            f"need num_frames, num_samples >= 1 and num_clips >= 1 or 'all', got {num_frames}, {num_samples}, "
            f"{num_clips!r}"
        )


def _short(num_frames: int, num_samples: int) -> list[int]:
    return list(range(num_frames)) + [num_frames - 1] * (num_samples - num_frames)


def _evenly(start: int, end: int, n: int) -> list[int]:
    """``n`` evenly spaced frames from ``start`` to ``end`` inclusive, rounded half to even as Python's
    ``round`` (the release's ``sampling``)."""
    if n == 1:
        return [int(round((start + end) / 2.0))]
    step = (end - start) / float(n - 1)
    return [int(round(start + x * step)) for x in range(n)]


def release_indices(
    num_frames: int,
    num_samples: int,
    *,
    train: bool,
    rng: random.Random | None = None,
    num_clips: NumClips = 1,
) -> list[list[int]]:
    """VIOLETv2's temporal sampling of ``T = num_samples`` frames out of ``N = num_frames``.

    With ``C = ceil(N / T)``, clip ``s`` takes ``T`` frames evenly spaced (rounded) from frame ``s`` to
    ``min(s + (T - 1) * C, N - 1)``, i.e. frames ``C`` apart.

    * training: one clip with a random start ``s`` in ``[0, C)`` (each of ``num_clips`` draws its own);
    * evaluation, one clip: ``T`` frames evenly spaced from the first frame to the last;
    * evaluation, ``num_clips="all"`` (the release's multi-clip testing): the ``C`` clips ``s = 0 .. C-1``;
    * evaluation, ``num_clips = k > 1``: ``k`` of those ``C`` clips with evenly spaced starts (rounded; the
      same clip repeats when ``k > C``).

    ``N == T`` or ``N == 1`` give the single clip of every frame; ``N < T`` repeats the last frame.
    """
    _check_counts(num_frames, num_samples, num_clips)
    n, t = num_frames, num_samples
    if n <= t or n == 1:
        return [_short(n, t) for _ in range(1 if num_clips == "all" else num_clips)]
    c = math.ceil(n / t)

    def clip(s: int) -> list[int]:
        return _evenly(s, min(s + (t - 1) * c, n - 1), t)

    if train:
        rng = rng or random.Random()
        return [clip(rng.randrange(c)) for _ in range(1 if num_clips == "all" else num_clips)]
    if num_clips == "all":
        return [clip(s) for s in range(c)]
    if num_clips == 1:
        return [_evenly(0, n - 1, t)]
    return [clip(int(round(j * (c - 1) / (num_clips - 1)))) for j in range(num_clips)]


# ---------------------------------------------------------------------------------------------- planning


def plan_seeks(
    keyframes: Sequence[int], targets: Sequence[int], start: int | None = 0, min_skip: int = 0
) -> list[int | None]:
    """Where to seek before decoding each target frame (``None``: keep decoding forward).

    Positions are frame ordinals (presentation order). A seek helps only when a keyframe lies after the
    decoder's position and at or before the target: the decoder restarts there instead of decoding every
    frame in between. It also flushes the decoder, which costs about as much as decoding a few frames, so a
    seek is planned only when it skips more than ``min_skip`` frames.

    Args:
        keyframes: Sorted ordinals of the keyframes.
        targets: Sorted, distinct ordinals of the frames wanted.
        start: Ordinal of the frame the decoder would produce next without a seek (``None``: it is not
            positioned, e.g. after demuxing for the index, so the first target always seeks).
        min_skip: Frames a seek must skip to be worth it.

    Returns:
        One entry per target: the keyframe ordinal to seek to, or ``None``.
    """
    plan: list[int | None] = []
    position = start
    for target in targets:
        key = keyframes[max(bisect_right(keyframes, target) - 1, 0)]
        seek = position is None or key - position > min_skip
        plan.append(key if seek else None)
        position = max(key if seek else position, target + 1)  # the next frame the decoder produces
    return plan


# ---------------------------------------------------------------------------------------------- index


@dataclass(frozen=True)
class ClipIndex:
    """Frame timestamps of a video stream, read by demuxing (no decoding).

    Attributes:
        pts: Sorted presentation timestamps of every frame (stream time base); empty when the file carries
            none (then frames are located by counting).
        keyframes: Sorted timestamps of the keyframes.
        num_frames: Number of frames (packets) in the stream.
        time_base: Seconds per timestamp unit.
    """

    pts: tuple[int, ...]
    keyframes: tuple[int, ...]
    num_frames: int
    time_base: Fraction

    def frame_range(self, start: float | None, end: float | None) -> tuple[int, int]:
        """Frame ordinals ``[first, last)`` whose timestamps lie in ``[start, end)`` seconds."""
        if not self.pts or (start is None and end is None):
            return 0, self.num_frames
        lo = 0 if start is None else _first_at_or_after(self.pts, start / self.time_base)
        hi = self.num_frames if end is None else _first_at_or_after(self.pts, end / self.time_base)
        return lo, hi


def _first_at_or_after(pts: Sequence[int], t: Fraction) -> int:
    return bisect_left(pts, t)


def _scan(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> ClipIndex:
    pts: list[int] = []
    keys: list[int] = []
    count, total, missing = 0, 0, False
    for packet in container.demux(stream):
        if packet.size == 0:
            continue
        total += 1
        if packet.is_discard:
            continue
        count += 1
        if packet.pts is None:
            missing = True
            continue
        pts.append(packet.pts)
        if packet.is_keyframe:
            keys.append(packet.pts)
    if stream.frames > total:  # the container's sample table lists frames whose data is missing
        raise _Truncated(f"truncated: the container lists {stream.frames} frames, only {total} are present")
    if missing:  # no timestamps to plan with: locate frames by counting, decode forward once
        return ClipIndex((), (), count, stream.time_base or Fraction(1, 1))
    return ClipIndex(
        tuple(sorted(pts)), tuple(sorted(keys)) or (min(pts, default=0),), count, stream.time_base
    )


def _cache_key(source: Source) -> tuple | None:
    if isinstance(source, bytes):
        return None
    st = os.stat(source)
    return (os.fspath(source), st.st_size, st.st_mtime_ns)


def index_video(source: Source) -> ClipIndex:
    """Index a video's frames (cached per file); see :class:`ClipIndex`.

    Args:
        source: Path or raw bytes of the file.

    Raises:
        VideoDecodeError: The file cannot be opened or holds no video frames.
    """
    with _open(source) as (container, stream):
        return _index(source, container, stream)


def _index(
    source: Source, container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> ClipIndex:
    key = _cache_key(source)
    if key is not None and key in _INDEX_CACHE:
        _INDEX_CACHE.move_to_end(key)
        return _INDEX_CACHE[key]
    try:
        index = _scan(container, stream)
    except av.error.FFmpegError as e:
        raise VideoDecodeError(_name(source), f"demuxing failed: {e}") from e
    except _Truncated as e:
        raise VideoDecodeError(_name(source), str(e)) from None
    if index.num_frames == 0:
        raise VideoDecodeError(_name(source), "the video stream holds no frames")
    if key is not None:
        _INDEX_CACHE[key] = index
        if len(_INDEX_CACHE) > _INDEX_CACHE_SIZE:
            _INDEX_CACHE.popitem(last=False)
    return index


# ---------------------------------------------------------------------------------------------- decoding


def _name(source: Source) -> str:
    return "<bytes>" if isinstance(source, bytes) else os.fspath(source)


class _open:
    """Context manager: open ``source`` and pick its first video stream, mapping failures to VideoDecodeError."""

    def __init__(self, source: Source, thread_type: str = "AUTO") -> None:
        self.source, self.thread_type, self.container = source, thread_type, None

    def __enter__(self) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
        name = _name(self.source)
        if isinstance(self.source, bytes) and not self.source:
            raise VideoDecodeError(name, "empty input (0 bytes)")
        if not isinstance(self.source, bytes):
            if not os.path.isfile(self.source):
                raise VideoDecodeError(name, "no such file")
            if os.path.getsize(self.source) == 0:
                raise VideoDecodeError(name, "empty file (0 bytes)")
        try:
            file = io.BytesIO(self.source) if isinstance(self.source, bytes) else os.fspath(self.source)
            self.container = av.open(file, metadata_errors="ignore")
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
            raise VideoDecodeError(name, f"not a readable media file ({e})") from e
        if not self.container.streams.video:
            self.container.close()
            raise VideoDecodeError(name, "no video stream")
        stream = self.container.streams.video[0]
        stream.thread_type = self.thread_type
        return self.container, stream

    def __exit__(self, *exc: object) -> None:
        if self.container is not None:
            self.container.close()


class _Frames:
    """Forward frame iterator over a stream with one frame of look-ahead (for overshooting matches)."""

    def __init__(self, container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> None:
        self.container, self.stream = container, stream
        self.frames: Iterator[av.VideoFrame] | None = None
        self.pending: av.VideoFrame | None = None

    def seek(self, pts: int) -> None:
        self.container.seek(pts, stream=self.stream, backward=True, any_frame=False)
        self.frames, self.pending = self.container.decode(self.stream), None

    def first_at_or_after(self, pts: int) -> av.VideoFrame | None:
        """The first frame whose timestamp is >= ``pts`` (kept as pending, so a repeat target finds it)."""
        if self.frames is None:
            self.frames = self.container.decode(self.stream)
        while self.pending is None or self.pending.pts is None or self.pending.pts < pts:
            self.pending = next(self.frames, None)
            if self.pending is None:
                return None
        return self.pending


def _output_size(width: int, height: int, size: int | None, side: str) -> tuple[int, int]:
    if size is None:
        return width, height
    pick = min if side == "shorter" else max
    scale = size / pick(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _to_rgb(frame: av.VideoFrame, size: int | None, side: str) -> np.ndarray:
    width, height = _output_size(frame.width, frame.height, size, side)
    return frame.reformat(width=width, height=height, format="rgb24").to_ndarray()


def _decode_planned(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    index: ClipIndex,
    ordinals: list[int],
    size: int | None,
    side: str,
    fresh: bool,
    name: str,
    min_skip: int,
) -> tuple[dict[int, np.ndarray], int]:
    targets = sorted(set(ordinals))
    keys = sorted({bisect_left(index.pts, k) for k in index.keyframes})
    start = 0 if fresh and keys[0] == 0 else None
    frames, out, rotation = _Frames(container, stream), {}, 0
    for target, seek in zip(targets, plan_seeks(keys, targets, start, min_skip)):
        if seek is not None:
            frames.seek(index.pts[seek])
        frame = frames.first_at_or_after(index.pts[target])
        if frame is None:
            raise VideoDecodeError(name, f"stream ended before frame {target} (pts {index.pts[target]})")
        out[target] = _to_rgb(frame, size, side)
        rotation = frame.rotation
    return out, rotation


def _decode_counting(
    source: Source, thread_type: str, ordinals: list[int], size: int | None, side: str
) -> tuple[dict[int, np.ndarray], int]:
    """Frames without timestamps (raw streams): decode forward once from a fresh open, counting frames."""
    name = _name(source)
    wanted, out, rotation = set(ordinals), {}, 0
    with _open(source, thread_type) as (container, stream):
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted:
                out[i], rotation = _to_rgb(frame, size, side), frame.rotation
            if len(out) == len(wanted):
                return out, rotation
    # fewer frames decoded than packets counted: repeat the last decoded one (it is the closest frame)
    if not out:
        raise VideoDecodeError(name, "no frame could be decoded")
    last = out[max(out)]
    return {i: out.get(i, last) for i in wanted}, rotation


def read_clips(
    source: Source,
    num_frames: int,
    *,
    train: bool = False,
    num_clips: NumClips = 1,
    rng: random.Random | None = None,
    size: int | None = None,
    side: Literal["shorter", "longer"] = "shorter",
    start: float | None = None,
    end: float | None = None,
    thread_type: str = "AUTO",
    seek_threshold: int = SEEK_THRESHOLD,
    sampling: Sampling = "segments",
    stored_frames: int | None = None,
) -> Tensor:
    """Decode ``num_clips`` sparsely sampled clips of ``num_frames`` frames each.

    Args:
        source: Path of a video / image file, or its raw bytes (streaming shards).
        num_frames: Frames per clip (T); 1 for still images.
        train: Random frame inside each segment (True) or segment centres (False); see :func:`sample_indices`.
        num_clips: Clips per video (multi-clip testing; ``"all"``: the release's ``ceil(N / T)`` clips);
            every clip is decoded in the same pass.
        rng: Random source for training sampling.
        size: Resize on decode so the ``side`` side has this many pixels (aspect kept); None keeps the size.
        side: Which side ``size`` refers to: ``"shorter"`` (crop transforms) or ``"longer"`` (pad-to-square).
        start: Clip start in seconds (None: from the first frame).
        end: Clip end in seconds, exclusive (None: to the last frame).
        thread_type: PyAV decoder threading (``"AUTO"``: frame + slice threads; ``"SLICE"``; ``"NONE"``).
        seek_threshold: Seek to a keyframe only when that skips more than this many frames (a seek flushes
            the decoder, which costs roughly as much as decoding several frames); see :func:`plan_seeks`.
        sampling: Frame sampling rule (see :func:`sample_indices`).
        stored_frames: Sample as from a frame store of this many frames per video (see
            :func:`sample_indices`).

    Returns:
        uint8 ``[n, t, c, h, w]`` RGB frames, rotated upright according to the file's display matrix.

    Raises:
        VideoDecodeError: The file is missing, empty, truncated, corrupt, not a video, or ``[start, end)``
            holds no frame.
    """
    name = _name(source)
    try:
        with _open(source, thread_type) as (container, stream):
            cached = _cache_key(source) in _INDEX_CACHE
            index = _index(source, container, stream)
            how = (train, rng, num_clips, sampling, stored_frames)
            clips = _sample_clips(index, name, num_frames, how, start, end)
            ordinals = [i for clip in clips for i in clip]
            if index.pts:
                plan = (index, ordinals, size, side, cached, name, seek_threshold)
                frames, rotation = _decode_planned(container, stream, *plan)
        if not index.pts:
            frames, rotation = _decode_counting(source, thread_type, ordinals, size, side)
    except av.error.FFmpegError as e:
        raise VideoDecodeError(name, f"decoding failed: {e}") from e
    video = torch.from_numpy(np.stack([[frames[i] for i in clip] for clip in clips]))
    return _rotate(rearrange(video, "n t h w c -> n t c h w"), rotation)


def _sample_clips(
    index: ClipIndex,
    name: str,
    num_frames: int,
    how: tuple[bool, random.Random | None, NumClips, Sampling, int | None],
    start: float | None,
    end: float | None,
) -> list[list[int]]:
    """Frame ordinals of every clip, inside the ``[start, end)`` trim."""
    lo, hi = index.frame_range(start, end)
    if hi <= lo:
        raise VideoDecodeError(name, f"no frame between start={start}s and end={end}s")
    train, rng, num_clips, sampling, stored = how
    clips = sample_indices(
        hi - lo,
        num_frames,
        train=train,
        rng=rng,
        num_clips=num_clips,
        sampling=sampling,
        stored_frames=stored,
    )
    return [[lo + i for i in clip] for clip in clips]


def _rotate(video: Tensor, degrees: int) -> Tensor:
    """Rotate frames counter-clockwise by ``degrees`` (a multiple of 90, as the display matrix says)."""
    turns = round(degrees / 90) % 4
    return torch.rot90(video, turns, dims=(-2, -1)).contiguous() if turns else video


def read_clip(
    source: Source,
    num_frames: int,
    *,
    train: bool = False,
    rng: random.Random | None = None,
    size: int | None = None,
    side: Literal["shorter", "longer"] = "shorter",
    start: float | None = None,
    end: float | None = None,
    thread_type: str = "AUTO",
    seek_threshold: int = SEEK_THRESHOLD,
    sampling: Sampling = "segments",
    stored_frames: int | None = None,
) -> Tensor:
    """Decode one sparsely sampled clip; arguments as :func:`read_clips`.

    Returns:
        uint8 ``[t, c, h, w]`` RGB frames.
    """
    return read_clips(
        source,
        num_frames,
        train=train,
        rng=rng,
        size=size,
        side=side,
        start=start,
        end=end,
        thread_type=thread_type,
        seek_threshold=seek_threshold,
        sampling=sampling,
        stored_frames=stored_frames,
    )[0]
