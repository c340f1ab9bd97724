"""LightningDataModules for pre-training and every downstream task family, all yielding
:class:`~violetv2.data.batch.VideoTextBatch` .

A split is one or more :class:`Source` objects: an annotation file read by a registered reader plus the folder
its videos live in, or a shard directory written by ``violet shard``. Every module can instead generate and use
the synthetic benchmark (``synthetic=True``).

Training loaders are :class:`MixedLoader` objects: each source gets its own loader and every batch comes from
one source (so images, ``t = 1``, never share a batch with ``t = T`` clips); the sources' batches are spread
over the epoch in proportion to their sizes. The position in the epoch (per source) is saved by Lightning in
checkpoints (``state_dict`` / ``load_state_dict`` of the train loader) and restored exactly: map-style sources
use a seeded per-epoch permutation that can start mid-way, shard sources resume as
:class:`~violetv2.data.shards.ShardLoader` does. In multi-GPU runs each source is split over ranks here, so the
Trainer's ``use_distributed_sampler`` does not touch training loaders (it still applies to evaluation).
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler
from transformers import PreTrainedTokenizerBase

from violetv2.data.batch import VideoTextBatch
from violetv2.data.dataset import VideoTextDataset, collate
from violetv2.data.records import Record
from violetv2.data.shards import ShardedVideoTextDataset, ShardLoader, check_resume
from violetv2.data.text import load_tokenizer

__all__ = [
    "CaptioningDataModule",
    "MixedLoader",
    "MultipleChoiceDataModule",
    "PretrainDataModule",
    "QADataModule",
    "ResumableSampler",
    "RetrievalDataModule",
    "Source",
    "VideoTextDataModule",
]


@dataclass
class Source:
    """One annotated data source: ``format`` + ``annotations`` + ``video_root``, or a ``shards`` directory.

    Attributes:
        format: Reader name (a key of :data:`violetv2.data.readers.READERS`, e.g. ``"webvid_csv"``).
        annotations: The annotation file.
        video_root: Folder the records' videos (or images) are relative to.
        shards: A directory written by ``violet shard`` (replaces the three fields above).
        options: Extra keyword arguments of the reader (e.g. ``{"video_layout": "flat"}``).
        task: Override every record's task (e.g. ``"captioning"`` from a retrieval file).
    """

    format: str | None = None
    annotations: str | None = None
    video_root: str | None = None
    shards: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    task: str | None = None

    def __post_init__(self) -> None:
        has_files = None not in (self.format, self.annotations, self.video_root)
        if (self.shards is not None) == has_files:
            raise ValueError(
                f"a Source needs either shards or all of format/annotations/video_root, got {self}"
            )

    def records(self) -> list[Record]:
        """The source's records (annotation sources only)."""
        from violetv2.data.readers import read_annotations

        records = read_annotations(self.format, self.annotations, **self.options)  # type: ignore[arg-type]
        return [dataclasses.replace(r, task=self.task) for r in records] if self.task else records


# ---------------------------------------------------------------------------------------------- loaders


class ResumableSampler(Sampler[int]):
    """A rank's share of a per-epoch permutation of ``size`` indices, which can start at any offset.

    Args:
        size: Dataset length.
        shuffle: Permute by ``(seed, epoch)`` (True) or keep order.
        seed: Base seed.
        rank: This rank.
        world_size: Number of ranks (the permutation is padded by wrap-around to a multiple of it).
    """

    def __init__(self, size: int, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.size, self.shuffle, self.seed, self.rank, self.world_size = size, shuffle, seed, rank, world_size
        self.epoch, self.start = 0, 0

    def __len__(self) -> int:
        return math.ceil(self.size / self.world_size)

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of ``epoch``."""
        self.epoch = epoch

    def fingerprint(self) -> dict[str, Any]:
        """What the order depends on besides the epoch (checked when a saved position is restored)."""
        return {"size": self.size, "world_size": self.world_size, "seed": self.seed, "shuffle": self.shuffle}

    def __iter__(self) -> Iterator[int]:
        order = list(range(self.size))
        if self.shuffle:
            random.Random(f"sampler-{self.seed}-{self.epoch}").shuffle(order)
        padded = (order * math.ceil(len(self) * self.world_size / self.size))[: len(self) * self.world_size]
        yield from padded[self.rank :: self.world_size][self.start :]


class _EpochHook:
    """The ``sampler`` slot Lightning calls ``set_epoch`` on at every epoch start."""

    def __init__(self, owner: MixedLoader) -> None:
        self.owner = owner

    def set_epoch(self, epoch: int) -> None:
        self.owner.set_epoch(epoch)


class MixedLoader:
    """Batches of several loaders, each batch from one of them, spread in proportion to their lengths.

    Batch ``j`` of loader ``i`` (of ``n_i``) takes slot ``(j + 0.5) / n_i`` of the epoch, so every source is
    spread evenly over it. Children are :class:`~violetv2.data.shards.ShardLoader` objects or DataLoaders with
    a :class:`ResumableSampler`; both can start mid-epoch, which makes this loader resumable (Lightning stores
    :meth:`state_dict` in checkpoints).

    Args:
        loaders: The per-source loaders.
    """

    def __init__(self, loaders: Sequence[DataLoader]) -> None:
        self.loaders = list(loaders)
        self.epoch, self.taken = 0, [0] * len(self.loaders)
        self._resume = False
        self.sampler = _EpochHook(self)

    def __len__(self) -> int:
        return sum(len(loader) for loader in self.loaders)

    def plan(self) -> list[int]:
        """Which loader each batch of the epoch comes from."""
        slots = [((j + 0.5) / len(dl), i) for i, dl in enumerate(self.loaders) for j in range(len(dl))]
        return [i for _, i in sorted(slots)]

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch to iterate next; resets progress when it changes."""
        if epoch != self.epoch:
            self.epoch, self.taken, self._resume = epoch, [0] * len(self.loaders), False

    def state_dict(self) -> dict[str, Any]:
        """Epoch, batches taken from each loader in it, and each child's state: the shard loaders' own, and
        for map-style children what their order depends on (dataset size, batch size, world size, seed)."""
        children = [
            dl.state_dict() if isinstance(dl, ShardLoader) else _map_fingerprint(dl) for dl in self.loaders
        ]
        return {"epoch": self.epoch, "taken": list(self.taken), "children": children}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where the saved loader stopped.

        Raises:
            ValueError: The saved run had other sources, dataset sizes, batch size, world size, seed or
                shuffling (the message names the source and the key), so the position would not fit.
        """
        if len(state["taken"]) != len(self.loaders):
            raise ValueError(
                f"cannot resume: the checkpoint's train loader had {len(state['taken'])} sources, this one has "
                f"{len(self.loaders)}"
            )
        for i, (loader, child) in enumerate(zip(self.loaders, state["children"])):
            if isinstance(loader, ShardLoader) != (child is not None and "batches" in child):
                raise ValueError(
                    f"cannot resume: train source {i} changed between shards and annotation files"
                )
            current = (
                loader.dataset.fingerprint() if isinstance(loader, ShardLoader) else _map_fingerprint(loader)
            )
            if child is not None:
                check_resume(child, current, f"train source {i} ({_describe(loader)})")
        for loader, child in zip(self.loaders, state["children"]):
            if isinstance(loader, ShardLoader):
                loader.load_state_dict(child)
        self.epoch, self.taken, self._resume = int(state["epoch"]), list(state["taken"]), True

    def __iter__(self) -> Iterator[VideoTextBatch]:
        if not self._resume:
            self.taken = [0] * len(self.loaders)
        self._resume = False
        for loader, taken in zip(self.loaders, self.taken):
            _prepare(loader, self.epoch, taken)
        iterators = [iter(loader) for loader in self.loaders]
        for i in self.plan()[sum(self.taken) :]:
            batch = next(iterators[i])
            self.taken[i] += 1
            if sum(self.taken) == len(self):
                self.epoch, self.taken = self.epoch + 1, [0] * len(self.loaders)
            yield batch


def _map_fingerprint(loader: DataLoader) -> dict[str, Any]:
    """What a map-style child's order depends on: its sampler's fingerprint plus batching."""
    sampler = loader.sampler
    keys = sampler.fingerprint() if isinstance(sampler, ResumableSampler) else {"size": len(loader.dataset)}
    return {**keys, "batch_size": loader.batch_size, "drop_last": loader.drop_last}


def _describe(loader: DataLoader) -> str:
    """``shards DIR`` or ``annotations FILE`` of a child loader, for messages."""
    dataset = loader.dataset
    if isinstance(dataset, ShardedVideoTextDataset):
        return f"shards {dataset.root}"
    records = getattr(dataset, "records", None)
    source = getattr(records[0], "source", "") if records else ""
    return f"annotations {source.rpartition(':')[0] or source or getattr(dataset, 'video_root', '?')}"


def _prepare(loader: DataLoader, epoch: int, taken: int) -> None:
    """Point a child loader at ``epoch``, ``taken`` batches in."""
    if isinstance(loader, ShardLoader):
        loader.set_epoch(epoch)  # keeps a loaded position of the same epoch
        return
    loader.sampler.set_epoch(epoch)  # type: ignore[union-attr]
    loader.sampler.start = taken * loader.batch_size  # type: ignore[union-attr, operator]
    loader.dataset.set_epoch(epoch)  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------- base


class VideoTextDataModule(L.LightningDataModule):
    """Shared plumbing: sources -> datasets -> loaders. Subclasses name the synthetic files of their task.

    Args:
        train: Training sources (mixed per batch in proportion to their sizes).
        val: Validation sources (one evaluation loader each).
        test: Test sources (one evaluation loader each).
        batch_size: Samples per batch and device.
        eval_batch_size: Batch size of validation / test (default: ``batch_size``).
        num_workers: DataLoader worker processes per source.
        pin_memory: Pin batches in page-locked memory (faster host-to-GPU copies).
        persistent_workers: Keep workers alive between epochs.
        num_frames: Frames per clip (T: 4 pre-training, 5 downstream); images always give 1.
        image_size: Frame side in pixels.
        tokenizer: Tokenizer name or directory (default: the synthetic benchmark's with ``synthetic``, else
            ``bert-base-uncased``).
        max_text_len: Text length in tokens.
        seed: Seed of shuffling and of the random frame / crop draws.
        shuffle_buffer: Within-worker shuffle block of shard sources.
        synthetic: Use the synthetic benchmark (generated under ``synthetic_root`` on first use) instead of
            ``train`` / ``val`` / ``test``.
        synthetic_root: Where the synthetic benchmark lives or is generated.
        synthetic_clips: Training clips of a generated synthetic benchmark (test clips: an eighth, at least 4).
    """

    synthetic_files: ClassVar[dict[str, tuple[str, str, dict[str, Any], str | None]]] = {}
    """split -> (reader, SyntheticPaths attribute, reader options, task override)."""

    def __init__(
        self,
        train: list[Source] | None = None,
        val: list[Source] | None = None,
        test: list[Source] | None = None,
        *,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        pin_memory: bool = True,
        persistent_workers: bool = False,
        num_frames: int = 5,
        image_size: int = 224,
        tokenizer: str | None = None,
        max_text_len: int = 25,
        seed: int = 0,
        shuffle_buffer: int = 256,
        synthetic: bool = False,
        synthetic_root: str = "data/synthetic",
        synthetic_clips: int = 256,
    ) -> None:
        super().__init__()
        self.sources = {"train": list(train or []), "val": list(val or []), "test": list(test or [])}
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.pin_memory, self.persistent_workers = (
            num_workers,
            pin_memory,
            persistent_workers,
        )
        self.num_frames, self.image_size, self.max_text_len = num_frames, image_size, max_text_len
        self.tokenizer_name, self.seed, self.shuffle_buffer = tokenizer, seed, shuffle_buffer
        self.synthetic, self.synthetic_root, self.synthetic_clips = synthetic, synthetic_root, synthetic_clips
        self.tokenizer: PreTrainedTokenizerBase | None = None
        self.datasets: dict[str, list[Any]] = {}

    def prepare_data(self) -> None:
        """Generate the synthetic benchmark once (rank 0) when ``synthetic`` is set."""
        if self.synthetic:
            self._generate()

    def _generate(self) -> Any:
        from violetv2.data.synthetic import generate

        test = max(4, self.synthetic_clips // 8)
        return generate(self.synthetic_root, num_train=self.synthetic_clips, num_test=test)

    def _synthetic_sources(self) -> dict[str, list[Source]]:
        paths = self._generate()  # a no-op when already complete
        out: dict[str, list[Source]] = {}
        for split, (fmt, attr, options, task) in self.synthetic_files.items():
            source = Source(
                fmt, str(getattr(paths, attr)), str(paths.videos), options=dict(options), task=task
            )
            out[split] = [source]
        return out

    def setup(self, stage: str | None = None) -> None:
        """Read annotations and build the datasets of every split that has sources."""
        if self.synthetic:
            self.sources = self._synthetic_sources()
        if self.tokenizer is None:
            name = self.tokenizer_name or (
                str(Path(self.synthetic_root) / "tokenizer") if self.synthetic else "bert-base-uncased"
            )
            self.tokenizer = load_tokenizer(name)
        for split, sources in self.sources.items():
            if sources and split not in self.datasets:
                self.datasets[split] = [self._dataset(s, train=split == "train") for s in sources]

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is not None:
            return trainer.global_rank, trainer.world_size
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def _dataset(self, source: Source, train: bool) -> VideoTextDataset | ShardedVideoTextDataset:
        common = {
            "num_frames": self.num_frames,
            "image_size": self.image_size,
            "max_text_len": self.max_text_len,
        }
        common |= {"train": train, "seed": self.seed}
        if source.shards is not None:
            rank, world = self._rank_world()
            batch = self.batch_size if train else self.eval_batch_size
            return ShardedVideoTextDataset(
                source.shards, self.tokenizer, batch_size=batch, shuffle_buffer=self.shuffle_buffer,
                rank=rank, world_size=world, drop_last=train, **common,
            )  # fmt: skip
        return VideoTextDataset(source.records(), source.video_root, self.tokenizer, **common)  # type: ignore[arg-type]

    def _loader(self, dataset: Any, train: bool) -> DataLoader:
        workers = {"num_workers": self.num_workers, "pin_memory": self.pin_memory}
        workers["persistent_workers"] = self.persistent_workers and self.num_workers > 0
        if isinstance(dataset, ShardedVideoTextDataset):
            return ShardLoader(dataset, **workers)
        if not train:
            return DataLoader(dataset, batch_size=self.eval_batch_size, collate_fn=collate, **workers)
        rank, world = self._rank_world()
        sampler = ResumableSampler(len(dataset), shuffle=True, seed=self.seed, rank=rank, world_size=world)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            collate_fn=collate,
            drop_last=True,
            **workers,
        )

    def train_dataloader(self) -> MixedLoader:
        """One :class:`MixedLoader` over every training source."""
        if "train" not in self.datasets:
            raise ValueError(f"{type(self).__name__}: no training sources (set `train` or `synthetic: true`)")
        return MixedLoader([self._loader(d, train=True) for d in self.datasets["train"]])

    def val_dataloader(self) -> list[DataLoader]:
        """One loader per validation source."""
        return [self._loader(d, train=False) for d in self.datasets.get("val", [])]

    def test_dataloader(self) -> list[DataLoader]:
        """One loader per test source."""
        return [self._loader(d, train=False) for d in self.datasets.get("test", [])]


# ---------------------------------------------------------------------------------------------- families

_WEBVID = {"video_layout": "flat"}


class PretrainDataModule(VideoTextDataModule):
    """Video-text + image-text pre-training (WebVid-2.5M + CC3M in the paper; images are ``t = 1`` clips).

    ``train`` lists every source, e.g. ``[{format: webvid_csv, annotations: ..., video_root: ...},
    {format: cc3m_tsv, annotations: ..., video_root: ...}]`` or shard directories. Each batch holds one source
    (images and videos never share a batch); the sources alternate in proportion to their sizes. With
    ``synthetic`` the benchmark's WebVid-layout captions are used. Arguments: see
    :class:`VideoTextDataModule` (defaults here: ``num_frames=4``, ``max_text_len=32`` as in the paper).
    """

    synthetic_files: ClassVar = {
        "train": ("webvid_csv", "webvid_train", _WEBVID, None),
        "val": ("webvid_csv", "webvid_val", _WEBVID, None),
    }

    def __init__(self, *args: Any, num_frames: int = 4, max_text_len: int = 32, **kwargs: Any) -> None:
        super().__init__(*args, num_frames=num_frames, max_text_len=max_text_len, **kwargs)


class RetrievalDataModule(VideoTextDataModule):
    """Text-video retrieval (MSRVTT, DiDeMo, LSMDC): caption records; synthetic: UMT-layout retrieval files.

    Arguments: see :class:`VideoTextDataModule`.
    """

    synthetic_files: ClassVar = {
        "train": ("umt_ret_json", "ret_train", {}, None),
        "val": ("umt_ret_json", "ret_test", {}, None),
        "test": ("umt_ret_json", "ret_test", {}, None),
    }


class MultipleChoiceDataModule(VideoTextDataModule):
    """Multiple choice (MSRVTT-MC, LSMDC-MC, TGIF-Action / Transition); synthetic: TGIF-Action layout.

    Arguments: see :class:`VideoTextDataModule`.
    """

    synthetic_files: ClassVar = {
        "train": ("tgif_action_csv", "action_train", {}, None),
        "val": ("tgif_action_csv", "action_test", {}, None),
        "test": ("tgif_action_csv", "action_test", {}, None),
    }


class QADataModule(VideoTextDataModule):
    """Open-ended QA and fill-in-the-blank (TGIF-Frame, MSRVTT-QA, MSVD-QA, LSMDC-FiB): the MLM head answers
    a ``[MASK]``; synthetic: TGIF-FrameQA layout.

    Arguments: see :class:`VideoTextDataModule`.
    """

    synthetic_files: ClassVar = {
        "train": ("tgif_frameqa_csv", "frameqa_train", {}, None),
        "val": ("tgif_frameqa_csv", "frameqa_test", {}, None),
        "test": ("tgif_frameqa_csv", "frameqa_test", {}, None),
    }


class CaptioningDataModule(VideoTextDataModule):
    """Video captioning (MSRVTT, MSVD): one sample per caption in training, every reference caption per video
    in evaluation; synthetic: the UMT retrieval files read as captioning.

    Arguments: see :class:`VideoTextDataModule`.
    """

    synthetic_files: ClassVar = {
        "train": ("umt_ret_json", "ret_train", {}, "captioning"),
        "val": ("umt_ret_json", "ret_test", {"unfold": False}, "captioning"),
        "test": ("umt_ret_json", "ret_test", {"unfold": False}, "captioning"),
    }
