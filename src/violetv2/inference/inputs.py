"""Inputs -> batches of clips: paths, bytes, uint8 frames or an already-decoded batch.

Lists are decoded by a DataLoader (background workers when the list is longer than a batch), batched, and
yielded with the names of the inputs that could not be read; one unreadable file never stops the rest.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..data.batch import VideoTextBatch
from ..data.dataset import _pad_clips
from ..data.video import VideoDecodeError
from .preprocessing import Preprocessing

__all__ = ["ClipBatch", "ClipDataset", "Failure", "VideoInput", "Videos", "input_name", "iter_clips"]

log = logging.getLogger(__name__)

VideoInput = str | os.PathLike | bytes | Tensor
"""One video: a path (any container PyAV reads, GIFs, still images), its bytes, or uint8 ``[t, c, h, w]``."""
Videos = Sequence[VideoInput] | VideoInput | Tensor | VideoTextBatch
"""Several videos: a list of :data:`VideoInput`, one of them, or an already-decoded ``[b, t, c, h, w]`` batch
(float, preprocessed as the model expects) / a :class:`~violetv2.data.batch.VideoTextBatch`."""


@dataclass(frozen=True)
class Failure:
    """An input that could not be used.

    Attributes:
        video: Its name (the path; ``<bytes #i>`` / ``<tensor #i>`` for in-memory inputs).
        reason: What went wrong.
        index: Its position in the input list.
    """

    video: str
    reason: str
    index: int


@dataclass
class ClipBatch:
    """Readable inputs of one batch: ``video`` float ``[(b n), t, c, h, w]``, their positions and names.

    ``clip_valid`` ``[(b n)]`` marks real clips when videos with fewer clips were padded (``num_clips="all"``).
    """

    video: Tensor
    indices: list[int]
    names: list[str]
    num_clips: int = 1
    clip_valid: Tensor | None = None


def input_name(item: Any, index: int) -> str:
    """A printable name for an input: the path, or ``<bytes #i>`` / ``<tensor #i>``."""
    if isinstance(item, (str, os.PathLike)):
        return os.fspath(item)
    if isinstance(item, bytes):
        return f"<bytes #{index}>"
    if isinstance(item, Tensor):
        return f"<tensor #{index}>"
    return f"<{type(item).__name__} #{index}>"


class ClipDataset(Dataset):
    """Decodes and preprocesses one input per item; failures come back as data, not exceptions.

    Args:
        items: Paths, bytes or uint8 ``[t, c, h, w]`` tensors.
        preprocessing: The model's preprocessing.
    """

    def __init__(self, items: Sequence[VideoInput], preprocessing: Preprocessing) -> None:
        self.items = list(items)
        self.preprocessing = preprocessing

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        out: dict[str, Any] = {"index": index, "name": input_name(item, index), "video": None, "error": None}
        try:
            if not isinstance(item, (str, os.PathLike, bytes, Tensor)):
                raise TypeError(f"unsupported input type {type(item).__name__}")
            out["video"] = self.preprocessing(item)
        except VideoDecodeError as e:
            out["error"] = e.reason
        except (TypeError, ValueError, RuntimeError, OSError) as e:
            out["error"] = f"{type(e).__name__}: {e}"
        return out


def _collate(samples: list[dict[str, Any]]) -> tuple[ClipBatch | None, list[Failure]]:
    good = [s for s in samples if s["error"] is None]
    failures = [Failure(s["name"], s["error"], s["index"]) for s in samples if s["error"] is not None]
    if not good:
        return None, failures
    videos, valid = _pad_clips(good)  # [b, n, t, c, h, w]; padding clips only when their counts differ
    n = videos.shape[1]
    video = videos.flatten(0, 1)
    valid = valid.flatten() if valid is not None else None
    batch = ClipBatch(video, [s["index"] for s in good], [s["name"] for s in good], n, valid)
    return batch, failures


def as_list(videos: Videos) -> list[VideoInput] | None:
    """``videos`` as a list of single inputs, or ``None`` for an already-decoded batch."""
    if isinstance(videos, VideoTextBatch):
        return None
    if isinstance(videos, Tensor):
        if videos.dim() == 5:
            return None if videos.is_floating_point() else list(videos.unbind(0))
        return [videos]
    if isinstance(videos, (str, os.PathLike, bytes)):
        return [videos]
    return list(videos)


def _decoded(videos: Tensor | VideoTextBatch, pre: Preprocessing, batch_size: int) -> Iterator[ClipBatch]:
    video = videos.video if isinstance(videos, VideoTextBatch) else videos
    n = videos.num_clips if isinstance(videos, VideoTextBatch) else 1
    if tuple(video.shape[-2:]) != (pre.image_size, pre.image_size):
        raise ValueError(
            f"a decoded batch must be [b, t, c, {pre.image_size}, {pre.image_size}] (this model's "
            f"preprocessing), got {tuple(video.shape)}; pass paths, bytes or uint8 frames to preprocess them"
        )
    names = getattr(videos, "video_ids", None) or []
    total = video.shape[0] // n
    for start in range(0, total, batch_size):
        idx = list(range(start, min(start + batch_size, total)))
        rows = video[start * n : (idx[-1] + 1) * n]
        batch_names = [names[i * n] if names else f"<batch row {i}>" for i in idx]
        valid = getattr(videos, "clip_valid", None)
        valid = valid[start * n : (idx[-1] + 1) * n] if valid is not None else None
        yield ClipBatch(rows, idx, batch_names, n, valid)


def iter_clips(
    videos: Videos,
    preprocessing: Preprocessing,
    *,
    batch_size: int = 16,
    num_workers: int | None = None,
    progress: bool = True,
    failures: list[Failure] | None = None,
    desc: str = "videos",
) -> Iterator[ClipBatch]:
    """Preprocessed batches of ``videos``; unreadable inputs are appended to ``failures`` (and logged).

    Args:
        videos: See :data:`Videos`.
        preprocessing: The model's preprocessing.
        batch_size: Inputs per batch.
        num_workers: Decoding processes; default: up to 4 when there is more than one batch, else 0.
        progress: Show a progress bar over the inputs.
        failures: List that collects a :class:`Failure` per unreadable input.
        desc: Progress-bar label.
    """
    items = as_list(videos)
    if items is None:
        yield from _decoded(videos, preprocessing, batch_size)  # type: ignore[arg-type]
        return
    if num_workers is None:
        num_workers = min(4, os.cpu_count() or 1) if len(items) > batch_size else 0
    loader = DataLoader(
        ClipDataset(items, preprocessing),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_collate,
    )
    bar = tqdm(total=len(items), desc=desc, unit="video", disable=not progress, leave=False)
    for batch, failed in loader:
        for failure in failed:
            log.warning("skipping unreadable video %s: %s", failure.video, failure.reason)
        if failures is not None:
            failures.extend(failed)
        bar.update(len(failed) + (len(batch.indices) if batch is not None else 0))
        if batch is not None:
            yield batch
    bar.close()
