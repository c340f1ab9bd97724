"""Streaming tar shards (webdataset layout) for multi-node training, with exact mid-epoch resume.

**Writing** (:func:`write_shards`, the ``violet shard`` command): any reader's records are packed into
``shard-000000.tar``, ``shard-000001.tar``, ... of ``samples_per_shard`` samples each. A sample is two tar
members sharing one key: ``<key>.json`` (the :class:`~violetv2.data.records.Record`) and ``<key>.video``, either
the file's bytes as stored (mode ``"bytes"``) or a small MJPEG Matroska clip of ``num_frames`` frames decoded
once at pack time, resized to ``image_size`` (mode ``"jpeg"``: every frame is a keyframe, so loading decodes only
the frames it uses). ``index.json`` lists every shard with its sample count, so lengths are known before
reading. Unreadable videos are skipped, listed in ``index.json`` and in the returned :class:`PackReport`.

**Reading** (:class:`ShardedVideoTextDataset` through :class:`ShardLoader`): one epoch is a fixed sequence of
positions over the shards in a per-epoch order (shuffled by ``(seed, epoch)``). Training pads it by wrap-around
to a multiple of ``world_size`` and cuts it into one equal contiguous span per rank; evaluation
(``pad_ranks=False``) cuts the unpadded epoch into contiguous spans differing by at most one sample, so no
sample is evaluated twice. A rank's batches are cut into one contiguous group per DataLoader worker, so each
worker reads only its own shards (plus the edges of two).
Inside a worker, consecutive blocks of ``shuffle_buffer`` samples are permuted by ``(seed, epoch, block)``.
Every sample then goes through :class:`~violetv2.data.dataset.VideoTextDataset`'s decoding, transforms and
tokenisation, and the worker yields collated batches.

**Resume**: the sequence of a (rank, worker) stream depends only on ``(seed, epoch)`` and the sizes, never on
the data, so the position "``k`` batches consumed in epoch ``e``" is enough to restart: the loader maps ``k``
to each worker's consumed batches (the DataLoader takes batches from workers round-robin), and each worker
skips whole blocks unread and replays the permutation of its current block. :class:`ShardLoader` implements
``state_dict`` / ``load_state_dict``, which Lightning 2.x saves in the fit loop's checkpoint state
(``CombinedLoader._state_dicts``) for every stateful train dataloader and restores before the first batch.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np
import torch
import torch.distributed as dist
import webdataset as wds
from einops import rearrange
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torch.utils.data.dataloader import _InfiniteConstantSampler
from transformers import PreTrainedTokenizerBase

from violetv2.data.batch import VideoTextBatch
from violetv2.data.dataset import (
    DEFAULT_EXTENSIONS,
    IMAGE_EXTENSIONS,
    VideoTextDataset,
    collate,
    resolve_video,
)
from violetv2.data.records import Record
from violetv2.data.video import VideoDecodeError, index_video, read_clip

__all__ = [
    "INDEX_NAME",
    "PackReport",
    "ShardIndex",
    "ShardLoader",
    "ShardedVideoTextDataset",
    "check_resume",
    "main",
    "write_shards",
]

log = logging.getLogger(__name__)

INDEX_NAME = "index.json"
FORMAT = "violetv2-shards/1"
MAX_WORKERS = 256
Mode = Literal["bytes", "jpeg"]


# ---------------------------------------------------------------------------------------------- index


@dataclass
class ShardIndex:
    """Contents of ``index.json``: the shards of one directory in order, with their sample counts.

    Attributes:
        shards: ``(file name, sample count)`` per shard, in writing order.
        mode: ``"bytes"`` (videos as stored) or ``"jpeg"`` (pre-decoded MJPEG frames).
        num_frames: Frames stored per video in ``"jpeg"`` mode (None in ``"bytes"`` mode).
        image_size: Side the ``"jpeg"`` frames were resized to at packing.
        skipped: ``{"sample_id", "video", "reason"}`` of every record left out at packing.
    """

    shards: list[tuple[str, int]]
    mode: Mode = "bytes"
    num_frames: int | None = None
    image_size: int | None = None
    skipped: list[dict[str, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Samples in all shards."""
        return sum(count for _, count in self.shards)

    def save(self, directory: Path) -> None:
        """Write ``directory/index.json``."""
        doc = {"format": FORMAT, **dataclasses.asdict(self), "total": self.total}
        (directory / INDEX_NAME).write_text(json.dumps(doc, indent=1))

    @classmethod
    def load(cls, directory: str | Path) -> ShardIndex:
        """Read and check ``directory/index.json``.

        Raises:
            FileNotFoundError: No index in ``directory``.
            ValueError: The index is malformed (the message names the key) or a listed shard is missing.
        """
        path = Path(directory) / INDEX_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no shard index (write shards with `violet shard`)")
        doc = json.loads(path.read_text())
        if doc.get("format") != FORMAT:
            raise ValueError(f"{path}: key 'format' is {doc.get('format')!r}, expected {FORMAT!r}")
        if doc.get("mode") not in ("bytes", "jpeg"):
            raise ValueError(f"{path}: key 'mode' is {doc.get('mode')!r}, expected 'bytes' or 'jpeg'")
        shards = [(str(name), int(count)) for name, count in doc.get("shards", [])]
        if not shards or any(count <= 0 for _, count in shards):
            raise ValueError(
                f"{path}: key 'shards' must list (name, count > 0) pairs, got {doc.get('shards')!r}"
            )
        escaping = [name for name, _ in shards if not _plain_name(name)]
        if escaping:
            raise ValueError(
                f"{path}: key 'shards' lists {escaping[0]!r}, which is not a plain file name inside {directory} "
                "(absolute paths, '..' and sub-folders are refused)"
            )
        missing = [name for name, _ in shards if not (Path(directory) / name).is_file()]
        if missing:
            raise ValueError(f"{path}: listed shards missing on disk: {missing[:5]}")
        index = cls(shards, doc["mode"], doc.get("num_frames"), doc.get("image_size"), doc.get("skipped", []))
        if doc.get("total", index.total) != index.total:
            raise ValueError(
                f"{path}: key 'total' is {doc['total']}, but the shard counts sum to {index.total}"
            )
        return index


def _plain_name(name: str) -> bool:
    """A file name that stays inside its directory: no separator, not ``.`` / ``..``, not absolute."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name and ":" not in name


# ---------------------------------------------------------------------------------------------- writing


@dataclass
class PackReport:
    """What :func:`write_shards` did.

    Attributes:
        out_dir: The shard directory.
        num_samples: Samples written.
        num_shards: Tar files written.
        skipped: ``{"sample_id", "video", "reason"}`` per record left out (unreadable or missing video).
    """

    out_dir: Path
    num_samples: int
    num_shards: int
    skipped: list[dict[str, str]]

    def __str__(self) -> str:
        text = f"wrote {self.num_samples} samples in {self.num_shards} shards to {self.out_dir}"
        return text + f"; skipped {len(self.skipped)} unreadable videos" * bool(self.skipped)


def encode_mjpeg(clip: Tensor, quality: int = 3) -> bytes:
    """uint8 ``[t, c, h, w]`` RGB frames -> an in-memory Matroska file of MJPEG frames (all keyframes).

    Args:
        clip: Frames to store; an odd height / width loses its last row / column (4:2:0 chroma).
        quality: FFmpeg ``q:v`` (2 best .. 31 worst).
    """
    frames = rearrange(clip[..., : clip.shape[-2] // 2 * 2, : clip.shape[-1] // 2 * 2], "t c h w -> t h w c")
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="matroska") as container:
        stream = container.add_stream("mjpeg", rate=max(len(frames), 1))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuvj420p"
        stream.options = {"q:v": str(quality)}
        for frame in frames.numpy():
            container.mux(
                stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24"))
            )
        container.mux(stream.encode())
    return buffer.getvalue()


def _payload(path: Path, record: Record, mode: Mode, num_frames: int, image_size: int, side: str) -> bytes:
    """The bytes stored for one sample (raises VideoDecodeError when the video cannot be read)."""
    if mode == "bytes":
        index_video(path)  # demux-only check: catches missing streams, truncation, non-video files
        return path.read_bytes()
    clip = read_clip(
        path,
        1 if record.is_image else num_frames,
        size=image_size,
        side=side,  # type: ignore[arg-type]
        start=record.start,
        end=record.end,
    )
    return encode_mjpeg(clip)


def write_shards(
    records: Iterable[Record],
    video_root: str | Path,
    out_dir: str | Path,
    *,
    samples_per_shard: int = 1000,
    mode: Mode = "bytes",
    num_frames: int = 8,
    image_size: int = 224,
    side: Literal["shorter", "longer"] = "shorter",
    shuffle_seed: int | None = None,
    extensions: Sequence[str] = DEFAULT_EXTENSIONS + IMAGE_EXTENSIONS,
) -> PackReport:
    """Pack records and their videos into tar shards plus ``index.json``.

    Args:
        records: Samples from any annotation reader.
        video_root: Folder the records' ``video`` names are relative to.
        out_dir: Output folder (created; existing shards of the same names are overwritten).
        samples_per_shard: Samples per tar file.
        mode: ``"bytes"``: the video file as stored. ``"jpeg"``: ``num_frames`` frames (segment centres of the
            record's ``[start, end)``) decoded now, resized so the ``side`` side is ``image_size``, stored as
            MJPEG; loading then samples its T frames among these.
        num_frames: Frames per video kept in ``"jpeg"`` mode (images keep 1).
        image_size: Resize target of ``"jpeg"`` mode.
        side: Which side ``image_size`` refers to (``"longer"`` for pad-to-square transforms).
        shuffle_seed: Shuffle the records before packing (recommended for training data, whose annotation
            order often groups similar videos); None keeps the order.
        extensions: Tried when a record's video name has no extension.

    Returns:
        What was written and skipped. Unreadable videos never stop packing.
    """
    if samples_per_shard < 1 or mode not in ("bytes", "jpeg"):
        raise ValueError(
            f"need samples_per_shard >= 1 and mode 'bytes'/'jpeg', got {samples_per_shard}, {mode!r}"
        )
    records, root, out = list(records), Path(video_root), Path(out_dir)
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(records)
    out.mkdir(parents=True, exist_ok=True)
    exts = tuple(e.lower() for e in extensions)
    shards: list[tuple[str, int]] = []
    skipped: list[dict[str, str]] = []
    writer: wds.TarWriter | None = None
    for record in records:
        path = resolve_video(root, record.video, exts)
        try:
            if path is None:
                raise VideoDecodeError(str(root / record.video), "no such file")
            payload = _payload(path, record, mode, num_frames, image_size, side)
        except VideoDecodeError as e:
            skipped.append({"sample_id": record.sample_id, "video": e.path, "reason": e.reason})
            log.warning("skipping %s (%s): %s", record.sample_id, e.path, e.reason)
            continue
        if writer is None or shards[-1][1] >= samples_per_shard:
            writer = _next_shard(writer, out, shards)
        key = f"{sum(n for _, n in shards):09d}"
        writer.write({"__key__": key, "json": dataclasses.asdict(record), "video": payload})
        shards[-1] = (shards[-1][0], shards[-1][1] + 1)
    if writer is not None:
        writer.close()
    kept = {"num_frames": num_frames, "image_size": image_size} if mode == "jpeg" else {}
    ShardIndex(shards, mode, skipped=skipped, **kept).save(out)
    return PackReport(out, sum(n for _, n in shards), len(shards), skipped)


def _next_shard(writer: wds.TarWriter | None, out: Path, shards: list[tuple[str, int]]) -> wds.TarWriter:
    if writer is not None:
        writer.close()
    name = f"shard-{len(shards):06d}.tar"
    shards.append((name, 0))
    return wds.TarWriter(str(out / name))


# ---------------------------------------------------------------------------------------------- epoch plan


def epoch_order(num_shards: int, seed: int, epoch: int, shuffle: bool) -> list[int]:
    """Shard order of one epoch: a permutation drawn from ``(seed, epoch)``, or file order."""
    order = list(range(num_shards))
    if shuffle:
        random.Random(f"shards-{seed}-{epoch}").shuffle(order)
    return order


def split_evenly(n: int, parts: int) -> list[tuple[int, int]]:
    """``(first, count)`` of ``parts`` contiguous groups of ``n`` items, the first ``n % parts`` one larger."""
    sizes = [n // parts + (i < n % parts) for i in range(parts)]
    return [(sum(sizes[:i]), size) for i, size in enumerate(sizes)]


def round_robin_consumed(counts: Sequence[int], taken: int) -> tuple[list[int], int]:
    """Batches taken from each worker after ``taken`` batches of a DataLoader, and the worker asked next.

    The DataLoader takes batch ``i`` from worker ``i % W`` and drops exhausted workers from the cycle; worker
    ``w`` yields ``counts[w]`` batches.
    """
    if taken > sum(counts):
        raise ValueError(f"{taken} batches consumed, but the workers yield only {sum(counts)}")
    done, w = [0] * len(counts), 0
    for _ in range(taken):
        while done[w] >= counts[w]:
            w = (w + 1) % len(counts)
        done[w] += 1
        w = (w + 1) % len(counts)
    return done, w


def check_resume(saved: dict[str, Any], current: dict[str, Any], where: str) -> None:
    """Refuse a resume whose saved run differs from this one in a key the data position depends on.

    Keys absent from ``saved`` (states written before the key existed) are not checked.

    Raises:
        ValueError: Names the source, the key, the saved and the current value.
    """
    changed = [key for key, value in current.items() if key in saved and saved[key] != value]
    if changed:
        diffs = ", ".join(f"{key!r} was {saved[key]!r}, is now {current[key]!r}" for key in changed)
        raise ValueError(
            f"cannot resume {where}: the run changed since the checkpoint ({diffs}); resuming would "
            "misalign the data order. Restore the old setting or start the epoch afresh."
        )


def _dist_rank_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None and world_size is not None:
        return rank, world_size
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


# ---------------------------------------------------------------------------------------------- decoding


class _ShardSamples(VideoTextDataset):
    """:class:`VideoTextDataset` whose clips come from shard bytes: same sampling, transforms and text fields."""

    def __init__(self, mode: Mode, **kw: Any) -> None:
        placeholder = Record(sample_id="", video="", text="")
        super().__init__([placeholder], ".", **kw)
        self.mode = mode
        self.records: dict[int, Record] = {}  # type: ignore[assignment]  # position -> record being decoded
        self._payload = b""

    def load_clip(self, record: Record, rng: random.Random) -> Tensor:
        # jpeg shards hold only [start, end), applied at packing
        return self.decode_clip(self._payload, record, rng, trimmed=self.mode == "jpeg")

    def decode(self, position: int, record: Record, payload: bytes) -> dict[str, Any]:
        """One sample; random draws seeded by ``(seed, epoch, position)`` as the map-style dataset does."""
        self.records, self._payload = {position: record}, payload
        try:
            return self._sample(position, self.epoch)
        finally:
            self.records, self._payload = {}, b""


def _collate_stream(samples: list[dict[str, Any] | None], where: str) -> VideoTextBatch:
    """Collate, replacing an unreadable sample (None) by the batch's previous (or next) readable one."""
    good = [i for i, s in enumerate(samples) if s is not None]
    if not good:
        raise RuntimeError(f"every sample of a batch failed to decode ({where})")
    filled = [samples[max([g for g in good if g <= i], default=good[0])] for i in range(len(samples))]
    batch = collate(filled)  # type: ignore[arg-type]
    batch.skipped += len(samples) - len(good)
    return batch


# ---------------------------------------------------------------------------------------------- dataset


class ShardedVideoTextDataset(IterableDataset):
    """Streaming batches from a shard directory, split over ranks and workers, resumable mid-epoch.

    Iterate it through :class:`ShardLoader` (it yields collated :class:`~violetv2.data.batch.VideoTextBatch`
    objects; the loader counts them for :meth:`state_dict`).

    Args:
        shards: Directory written by :func:`write_shards` (holds ``index.json``).
        tokenizer: BERT-style tokenizer (see :func:`violetv2.data.text.load_tokenizer`).
        batch_size: Samples per batch (per rank).
        num_frames: Frames per clip (T); images give 1.
        image_size: Output side in pixels.
        max_text_len: Text length in tokens.
        train: Random frame offsets and crops (True) or deterministic centres (False).
        shuffle: Shuffle shard order and blocks each epoch (default: ``train``).
        shuffle_buffer: Block size of the within-worker shuffle (samples held in memory per worker).
        seed: Base seed of every random draw.
        drop_last: Drop the rank's last incomplete batch.
        pad_ranks: Pad the epoch by wrap-around so every rank gets the same number of samples (default:
            ``train``). Evaluation leaves it off: the ranks then get disjoint contiguous spans (sizes differing
            by at most one) that cover the split exactly once, so no sample is evaluated twice.
        rank: This process's rank (default: from ``torch.distributed`` if initialised, else 0).
        world_size: Number of ranks (default: from ``torch.distributed`` if initialised, else 1).
        num_clips: Clips per video (multi-clip testing).
        transform: Clip transform as in :class:`~violetv2.data.dataset.VideoTextDataset` (default: train /
            eval transform of ``image_size``).
        sample_options: Further :class:`~violetv2.data.dataset.VideoTextDataset` arguments of the decoded
            samples (``text_layout``, ``sampling``, ``stored_frames``, ``shuffle_options``, ``answer_vocab``).
    """

    def __init__(
        self,
        shards: str | Path,
        tokenizer: PreTrainedTokenizerBase,
        *,
        batch_size: int,
        num_frames: int = 4,
        image_size: int = 224,
        max_text_len: int = 32,
        train: bool = True,
        shuffle: bool | None = None,
        shuffle_buffer: int = 256,
        seed: int = 0,
        drop_last: bool = False,
        pad_ranks: bool | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        num_clips: int = 1,
        transform: Callable[..., Tensor] | None = None,
        sample_options: Mapping[str, Any] | None = None,
    ) -> None:
        if batch_size < 1 or shuffle_buffer < 1:
            raise ValueError(
                f"batch_size and shuffle_buffer must be >= 1, got {batch_size}, {shuffle_buffer}"
            )
        self.root = Path(shards)
        self.index = ShardIndex.load(self.root)
        self.batch_size, self.drop_last, self.seed = batch_size, drop_last, seed
        self.shuffle = train if shuffle is None else shuffle
        self.shuffle_buffer = shuffle_buffer
        self.pad_ranks = train if pad_ranks is None else pad_ranks
        self.rank, self.world_size = _dist_rank_world(rank, world_size)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} outside world of size {self.world_size}")
        self.samples = _ShardSamples(
            self.index.mode,
            tokenizer=tokenizer,
            num_frames=num_frames,
            image_size=image_size,
            max_text_len=max_text_len,
            train=train,
            num_clips=num_clips,
            seed=seed,
            transform=transform,
            **(sample_options or {}),
        )
        self.num_workers = 0
        self.epoch, self.batches = 0, 0
        self._resume: tuple[int, int] | None = None
        # [epoch, rotation, skip_0 .. skip_{W-1}] read by every worker when its iteration starts (shared memory,
        # so persistent workers see it too). Worker process p plays stream (p + rotation) % W, and skips that
        # stream's first skip batches: a resumed DataLoader asks process 0 first, which must serve the stream
        # that the interrupted one would have asked next.
        self._control = torch.zeros(2 + MAX_WORKERS, dtype=torch.long).share_memory_()

    # ----------------------------------------------------------------------------------- sizes

    def rank_range(self) -> tuple[int, int]:
        """``(first epoch position, samples)`` of this rank: equal spans of a wrap-around padded epoch
        (``pad_ranks``), else the unpadded epoch split into contiguous spans differing by at most one."""
        if self.pad_ranks:
            span = -(-self.index.total // self.world_size)
            return self.rank * span, span
        return split_evenly(self.index.total, self.world_size)[self.rank]

    @property
    def span(self) -> int:
        """Samples of this rank per epoch (see :meth:`rank_range`)."""
        return self.rank_range()[1]

    def __len__(self) -> int:
        """Batches per rank and epoch."""
        return self.span // self.batch_size if self.drop_last else -(-self.span // self.batch_size)

    @property
    def num_samples(self) -> int:
        """Samples per rank and epoch that reach a batch."""
        return min(self.span, len(self) * self.batch_size)

    def worker_batches(self) -> list[tuple[int, int]]:
        """``(first batch, count)`` of each worker's contiguous group of this rank's batches."""
        return split_evenly(len(self), max(self.num_workers, 1))

    # ----------------------------------------------------------------------------------- state

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch to iterate next (changes shard order, blocks and random draws); resets progress."""
        if epoch != self.epoch:
            self.epoch, self.batches, self._resume = epoch, 0, None

    def state_dict(self) -> dict[str, Any]:
        """Progress: epoch and batches (and samples) consumed in it, plus what the position depends on."""
        return {
            "epoch": self.epoch,
            "batches": self.batches,
            "samples": min(self.batches * self.batch_size, self.num_samples),
            **self.fingerprint(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a position; the next iteration continues exactly where the saved one stopped.

        Raises:
            ValueError: The state was saved with different data, batch size, workers, world size, seed or
                shuffling (the message names the key).
        """
        check_resume(state, self.fingerprint(), f"shards {self.root}")
        epoch, batches = int(state["epoch"]), int(state["batches"])
        if batches >= len(self):
            epoch, batches = epoch + 1, 0
        self.epoch, self.batches, self._resume = epoch, batches, (epoch, batches)

    def fingerprint(self) -> dict[str, Any]:
        """What the stream order depends on besides the epoch (checked by :meth:`load_state_dict`)."""
        return {
            "total": self.index.total,
            "batch_size": self.batch_size,
            "num_workers": self.num_workers,
            "world_size": self.world_size,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "drop_last": self.drop_last,
            "pad_ranks": self.pad_ranks,
        }

    def start_iteration(self) -> None:
        """Called by the loader in the main process before each pass: publishes epoch and skips to workers."""
        skip = self._resume[1] if self._resume else 0
        self._resume = None
        self.batches = skip
        counts = [count for _, count in self.worker_batches()]
        done, rotation = round_robin_consumed(counts, skip)
        self._control[:2] = torch.tensor([self.epoch, rotation])
        self._control[2 : 2 + len(done)] = torch.tensor(done)

    def batch_consumed(self) -> None:
        """Called by the loader for every batch it hands out; rolls over to the next epoch after the last."""
        self.batches += 1
        if self.batches >= len(self):
            self.epoch, self.batches = self.epoch + 1, 0

    # ----------------------------------------------------------------------------------- iteration

    def __iter__(self) -> Iterator[VideoTextBatch]:
        epoch, rotation = int(self._control[0]), int(self._control[1])
        worker = (self._worker() + rotation) % max(self.num_workers, 1)
        skip = int(self._control[2 + worker])
        first, count = self.worker_batches()[worker]
        lo = first * self.batch_size
        hi = min((first + count) * self.batch_size, self.num_samples)
        positions = self._positions(epoch, lo, hi, skip * self.batch_size)
        self.samples.set_epoch(epoch)
        pending: list[dict[str, Any] | None] = []
        for position, sample in positions:
            pending.append(self._decode(position, sample))
            if len(pending) == self.batch_size:
                yield _collate_stream(pending, f"{self.root}, epoch {epoch}, worker {worker}")
                pending = []
        if pending:
            yield _collate_stream(pending, f"{self.root}, epoch {epoch}, worker {worker}")

    def _worker(self) -> int:
        info = get_worker_info()
        workers = info.num_workers if info else 0
        if workers != self.num_workers:
            raise RuntimeError(
                f"dataset was set up for num_workers={self.num_workers} but runs with {workers}: "
                "iterate it through ShardLoader (which sets dataset.num_workers)"
            )
        return info.id if info else 0

    def _positions(self, epoch: int, lo: int, hi: int, skip: int) -> Iterator[tuple[int, dict[str, Any]]]:
        """Raw samples of rank offsets ``[lo, hi)`` in shuffled-block order, the first ``skip`` left out."""
        size = self.shuffle_buffer
        first_block = skip // size
        start = self.rank_range()[0]
        reader = self._read(epoch, start + lo + first_block * size, start + hi)
        for block_lo in range(lo + first_block * size, hi, size):
            block = list(islice(reader, min(size, hi - block_lo)))
            if self.shuffle:
                random.Random(f"block-{self.seed}-{epoch}-{start + block_lo}").shuffle(block)
            drop = skip - first_block * size if block_lo == lo + first_block * size else 0
            yield from block[drop:]

    def _read(self, epoch: int, a: int, b: int) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(position, raw sample)`` for epoch positions ``[a, b)`` (positions past the total wrap around)."""
        total = self.index.total
        yield from self._read_unpadded(epoch, a, min(b, total), offset=0)
        if b > total:
            yield from self._read_unpadded(epoch, max(a, total) - total, b - total, offset=total)

    def _read_unpadded(self, epoch: int, a: int, b: int, offset: int) -> Iterator[tuple[int, dict[str, Any]]]:
        start = 0
        for shard in epoch_order(len(self.index.shards), self.seed, epoch, self.shuffle):
            name, count = self.index.shards[shard]
            if start < b and start + count > a:
                for i, sample in enumerate(islice(self._shard_samples(name), min(count, b - start))):
                    if start + i >= a:
                        yield offset + start + i, sample
            start += count

    def _shard_samples(self, name: str) -> Iterator[dict[str, Any]]:
        url = str(self.root / name)
        for sample in wds.tariterators.tarfile_samples([{"url": url}]):
            if "json" not in sample or "video" not in sample:
                raise ValueError(f"{url}: sample {sample.get('__key__')!r} lacks a .json or .video member")
            yield sample

    def _decode(self, position: int, raw: dict[str, Any]) -> dict[str, Any] | None:
        record = Record(**json.loads(raw["json"]))
        try:
            return self.samples.decode(position, record, raw["video"])
        except VideoDecodeError as e:
            log.warning(
                "skipping undecodable sample %s (%s in %s): %s",
                record.sample_id,
                raw["__key__"],
                raw.get("__url__"),
                e.reason,
            )
            return None


# ---------------------------------------------------------------------------------------------- loader


class _EpochHook(_InfiniteConstantSampler):
    """Stands in the DataLoader's ``sampler`` slot so ``set_epoch`` (Lightning calls it each epoch) reaches
    the dataset."""

    def __init__(self, dataset: ShardedVideoTextDataset) -> None:
        super().__init__()
        self.dataset = dataset

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)


def _identity(batch: VideoTextBatch) -> VideoTextBatch:
    return batch


class ShardLoader(DataLoader):
    """DataLoader over a :class:`ShardedVideoTextDataset` that knows its position (stateful for Lightning).

    Lightning 2.x treats a train dataloader with ``state_dict`` / ``load_state_dict`` as resumable: the fit loop
    stores its state in checkpoints and restores it before the first batch after resuming.

    Args:
        dataset: The streaming dataset (it batches; this loader does not).
        num_workers: Worker processes; each reads its own group of batches.
        pin_memory: Pin batches in page-locked memory.
        persistent_workers: Keep workers alive between epochs (they read epoch and position from shared memory).
        prefetch_factor: Batches prefetched per worker (None: PyTorch's default).
    """

    def __init__(
        self,
        dataset: ShardedVideoTextDataset,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        prefetch_factor: int | None = None,
    ) -> None:
        if not 0 <= num_workers <= MAX_WORKERS:
            raise ValueError(f"num_workers must be in [0, {MAX_WORKERS}], got {num_workers}")
        dataset.num_workers = num_workers
        super().__init__(
            dataset,
            batch_size=None,
            collate_fn=_identity,
            num_workers=num_workers,
            pin_memory=pin_memory,
            persistent_workers=persistent_workers and num_workers > 0,
            prefetch_factor=prefetch_factor if num_workers > 0 else None,
        )
        object.__setattr__(self, "sampler", _EpochHook(dataset))  # DataLoader forbids setting it after init

    def __iter__(self) -> Iterator[VideoTextBatch]:
        dataset: ShardedVideoTextDataset = self.dataset  # type: ignore[assignment]
        dataset.start_iteration()
        for batch in super().__iter__():
            dataset.batch_consumed()
            yield batch

    def set_epoch(self, epoch: int) -> None:
        """See :meth:`ShardedVideoTextDataset.set_epoch`."""
        self.dataset.set_epoch(epoch)  # type: ignore[attr-defined]

    def state_dict(self) -> dict[str, Any]:
        """See :meth:`ShardedVideoTextDataset.state_dict`."""
        return self.dataset.state_dict()  # type: ignore[attr-defined]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """See :meth:`ShardedVideoTextDataset.load_state_dict`."""
        self.dataset.load_state_dict(state_dict)  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------- command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="violet shard",
        description="Pack an annotated video (or image) set into webdataset tar shards plus index.json, for "
        "streaming training (ShardedVideoTextDataset). Unreadable videos are skipped and reported.",
    )
    parser.add_argument("--format", required=True, help="annotation format (a key of violetv2 READERS)")
    parser.add_argument("--annotations", required=True, type=Path, help="annotation file")
    parser.add_argument("--video-root", required=True, type=Path, help="folder the videos are relative to")
    parser.add_argument("--out", required=True, type=Path, help="output folder for shards and index.json")
    parser.add_argument(
        "--mode",
        choices=("bytes", "jpeg"),
        default="bytes",
        help="bytes: videos as stored; jpeg: pre-decoded MJPEG frames (fast loading)",
    )
    parser.add_argument("--samples-per-shard", type=int, default=1000, help="samples per tar file")
    parser.add_argument("--num-frames", type=int, default=8, help="frames kept per video in jpeg mode")
    parser.add_argument("--image-size", type=int, default=224, help="resize target of jpeg mode")
    parser.add_argument(
        "--side",
        choices=("shorter", "longer"),
        default="shorter",
        help="side --image-size refers to (longer for pad-to-square transforms)",
    )
    parser.add_argument("--shuffle-seed", type=int, default=None, help="shuffle records before packing")
    parser.add_argument(
        "--reader-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra keyword argument of the reader (repeatable; VALUE parsed as JSON if it can be)",
    )
    return parser


def _reader_kwargs(pairs: list[str]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--reader-arg {pair!r}: expected KEY=VALUE")
        try:
            kwargs[key] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key] = value
    return kwargs


def main(argv: list[str] | None = None) -> PackReport:
    """``violet shard``: read annotations with a registered reader and write shards (see ``--help``)."""
    args = _parser().parse_args(argv)
    from violetv2.data.readers import read_annotations

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    records = read_annotations(args.format, args.annotations, **_reader_kwargs(args.reader_arg))
    report = write_shards(
        records,
        args.video_root,
        args.out,
        samples_per_shard=args.samples_per_shard,
        mode=args.mode,
        num_frames=args.num_frames,
        image_size=args.image_size,
        side=args.side,
        shuffle_seed=args.shuffle_seed,
    )
    print(report)
    for item in report.skipped:
        print(f"  skipped {item['sample_id']}: {item['video']}: {item['reason']}")
    return report
