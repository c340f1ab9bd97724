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
from typing import Any, ClassVar, Literal

import lightning as L
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler
from transformers import PreTrainedTokenizerBase

from violetv2.data.batch import VideoTextBatch
from violetv2.data.dataset import VideoTextDataset, collate
from violetv2.data.layouts import LAYOUTS, answer_vocabulary
from violetv2.data.records import Record
from violetv2.data.shards import ShardedVideoTextDataset, ShardLoader, check_resume
from violetv2.data.text import load_tokenizer
from violetv2.data.transforms import TRANSFORMS, GpuNormalize, build_transform

__all__ = [
    "BENCHMARKS",
    "CaptioningDataModule",
    "EpochIndex",
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


class EpochIndex(int):
    """A dataset index that carries the epoch it was drawn for (read by :class:`VideoTextDataset`, whose copies
    in persistent DataLoader workers never see ``set_epoch``); otherwise a plain ``int``."""

    epoch: int

    def __new__(cls, index: int, epoch: int) -> EpochIndex:
        self = super().__new__(cls, index)
        self.epoch = epoch
        return self

    def __reduce__(self) -> tuple[type, tuple[int, int]]:
        return EpochIndex, (int(self), self.epoch)


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
        for index in padded[self.rank :: self.world_size][self.start :]:
            yield EpochIndex(index, self.epoch)


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


def _preset(benchmark: str | None) -> dict[str, Any]:
    if benchmark is None:
        return {}
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; known: {sorted(BENCHMARKS)}")
    return BENCHMARKS[benchmark]


def _check_choices(dm: VideoTextDataModule) -> None:
    if dm.text_layout is not None and dm.text_layout not in LAYOUTS:
        raise ValueError(f"unknown text_layout {dm.text_layout!r}; choose from {list(LAYOUTS)} or None")
    for name in ("train_transform", "eval_transform"):
        if getattr(dm, name) not in TRANSFORMS:
            raise ValueError(f"unknown {name} {getattr(dm, name)!r}; choose from {sorted(TRANSFORMS)}")
    if dm.frame_sampling not in ("release", "segments"):
        raise ValueError(f"frame_sampling must be 'release' or 'segments', got {dm.frame_sampling!r}")
    if dm.num_clips != "all" and not (isinstance(dm.num_clips, int) and dm.num_clips >= 1):
        raise ValueError(f"num_clips must be >= 1 or 'all', got {dm.num_clips!r}")


# ---------------------------------------------------------------------------------------------- base

_LONG = {"max_text_len": 100}
_TGIF_MC = {
    **_LONG,
    "text_layout": "mc_prompt",
    "train_transform": "pad_square",
    "eval_transform": "pad_square",
}
BENCHMARKS: dict[str, dict[str, Any]] = {
    "msrvtt_ret": {"text_layout": "caption"},
    "didemo_ret": {**_LONG, "text_layout": "caption"},
    "lsmdc_ret": {"text_layout": "caption"},
    "msrvtt_mc": {"text_layout": "choice"},
    "lsmdc_mc": {"text_layout": "choice"},
    "tgif_action": _TGIF_MC,
    "tgif_transition": _TGIF_MC,
    "tgif_frame": {"text_layout": "qa", "answer_vocab_size": 1540},
    "msrvtt_qa": {"text_layout": "qa", "answer_vocab_size": 1500},
    "msvd_qa": {"text_layout": "qa", "answer_vocab_size": 1000},
    "lsmdc_fib": {"text_layout": "fill_blank", "answer_vocab_size": 908},
    "msrvtt_cap": {"text_layout": "caption"},
    "msvd_cap": {"text_layout": "caption"},
}
"""The release's per-benchmark data settings (``_args/args_<task>.json``): text length ``L`` (25 unless
listed: 100 for TGIF-Action / Transition and DiDeMo), text layout, transforms (TGIF-Action / Transition
ask for ``pad_resize``: pad to a square), classifier answer-vocabulary sizes. A ``benchmark`` argument
applies them; any argument given explicitly wins."""


class VideoTextDataModule(L.LightningDataModule):
    """Shared plumbing: sources -> datasets -> loaders. Subclasses name the synthetic files of their task.

    Args:
        train: Training sources (mixed per batch in proportion to their sizes).
        val: Validation sources (one evaluation loader each).
        test: Test sources (one evaluation loader each).
        predict: Sources of ``violet predict`` (default: the test sources).
        batch_size: Samples per batch and device.
        eval_batch_size: Batch size of validation / test (default: ``batch_size``).
        num_workers: DataLoader worker processes per source.
        pin_memory: Pin batches in page-locked memory (faster host-to-GPU copies).
        persistent_workers: Keep workers alive between epochs.
        num_frames: Frames per clip (T: 4 pre-training, 5 downstream); images always give 1.
        image_size: Frame side in pixels.
        tokenizer: Tokenizer name or directory (default: the synthetic benchmark's with ``synthetic``, else
            ``bert-base-uncased``).
        max_text_len: Text length ``L`` (None: the benchmark's, else 25, 100 with ``mc_prompt``; 32 for
            pre-training); the
            ``mc_prompt`` / ``qa`` layouts give ``L + 3`` / ``L + 5`` ids.
        seed: Seed of shuffling and of the random frame / crop draws.
        shuffle_buffer: Within-worker shuffle block of shard sources.
        synthetic: Use the synthetic benchmark (generated under ``synthetic_root`` on first use) instead of
            ``train`` / ``val`` / ``test``.
        synthetic_root: Where the synthetic benchmark lives or is generated.
        synthetic_clips: Training clips of a generated synthetic benchmark (test clips: an eighth, at least 4).
        benchmark: A key of :data:`BENCHMARKS` (``"msrvtt_ret"``, ``"tgif_action"``, ...): its text length,
            layout and transforms become the defaults of the arguments below left at None.
        text_layout: Text layout of every sample (:data:`~violetv2.data.layouts.LAYOUTS`); None: by record
            task (caption -> ``caption``, multiple choice -> ``choice``, QA -> ``qa``, FiB -> ``fill_blank``).
        train_transform: Training clip transform, a key of :data:`~violetv2.data.transforms.TRANSFORMS`
            (default ``"random_crop"``: one random crop per clip; ``"frame_random_crop"``: the release's
            per-frame crops; ``"pad_square"``).
        eval_transform: Validation / test transform (default ``"center_crop"``; ``"pad_square"``).
        frame_sampling: ``"release"`` (VIOLETv2's stride rule) or ``"segments"``; see
            :func:`~violetv2.data.video.sample_indices`.
        num_clips: Clips per test video (multi-clip testing; ``"all"``: the release's ``ceil(N / T)``
            clips). Validation and training always use one clip, as the release.
        stored_frames: Sample as from a frame store of this many frames per video (the release samples its
            pre-extracted frames); None: from every decoded frame.
        gpu_normalize: Workers send uint8 clips and :class:`~violetv2.data.transforms.GpuNormalize`
            converts and normalises them on the device after the transfer (``on_after_batch_transfer``).
    """

    synthetic_files: ClassVar[dict[str, tuple[str, str, dict[str, Any], str | None]]] = {}
    """split -> (reader, SyntheticPaths attribute, reader options, task override)."""
    default_max_text_len: ClassVar[int] = 25

    def __init__(
        self,
        train: list[Source] | None = None,
        val: list[Source] | None = None,
        test: list[Source] | None = None,
        predict: list[Source] | None = None,
        *,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        pin_memory: bool = True,
        persistent_workers: bool = False,
        num_frames: int = 5,
        image_size: int = 224,
        tokenizer: str | None = None,
        max_text_len: int | None = None,
        seed: int = 0,
        shuffle_buffer: int = 256,
        synthetic: bool = False,
        synthetic_root: str = "data/synthetic",
        synthetic_clips: int = 256,
        benchmark: str | None = None,
        text_layout: str | None = None,
        train_transform: str | None = None,
        eval_transform: str | None = None,
        frame_sampling: Literal["release", "segments"] = "release",
        num_clips: int | Literal["all"] = 1,
        stored_frames: int | None = None,
        gpu_normalize: bool = False,
    ) -> None:
        super().__init__()
        preset = _preset(benchmark)
        self.benchmark, self.text_layout = benchmark, text_layout or preset.get("text_layout")
        # options in the prompt need the release's TGIF length (100): at 25 the later options are cut off
        default_len = 100 if self.text_layout == "mc_prompt" else self.default_max_text_len
        max_text_len = max_text_len or preset.get("max_text_len", default_len)
        self.train_transform = train_transform or preset.get("train_transform", "random_crop")
        self.eval_transform = eval_transform or preset.get("eval_transform", "center_crop")
        self.frame_sampling, self.num_clips, self.stored_frames = frame_sampling, num_clips, stored_frames
        self.gpu_normalize = gpu_normalize
        self._gpu = GpuNormalize() if gpu_normalize else None
        if gpu_normalize:
            self.on_after_batch_transfer = self._normalize_on_device  # type: ignore[method-assign]
        _check_choices(self)
        self.sources = {"train": list(train or []), "val": list(val or []), "test": list(test or [])}
        self.sources["predict"] = list(predict or [])
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

    def _synthetic_files(self) -> dict[str, tuple[str, str, dict[str, Any], str | None]]:
        """The synthetic benchmark's file of each split (subclasses pick by layout)."""
        return self.synthetic_files

    def _synthetic_sources(self) -> dict[str, list[Source]]:
        paths = self._generate()  # a no-op when already complete
        out: dict[str, list[Source]] = {}
        for split, (fmt, attr, options, task) in self._synthetic_files().items():
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
                self.datasets[split] = [self._dataset(s, split) for s in sources]

    def _normalize_on_device(self, batch: Any, dataloader_idx: int) -> Any:
        """``on_after_batch_transfer`` with ``gpu_normalize``: uint8 clips -> float, ImageNet-normalised, on the
        device. Installed on the instance only then, so a task module's own hook is not shadowed otherwise."""
        if self._gpu is not None and isinstance(batch, VideoTextBatch) and batch.video.dtype == torch.uint8:
            self._gpu = self._gpu.to(batch.video.device)
            batch.video = self._gpu(batch.video)
        return batch

    def dataset_options(self, split: str) -> dict[str, Any]:
        """Keyword arguments of the :class:`VideoTextDataset` of ``split`` (``train`` / ``val`` / ``test``)."""
        train = split == "train"
        kind = self.train_transform if train else self.eval_transform
        return {
            "num_frames": self.num_frames,
            "image_size": self.image_size,
            "max_text_len": self.max_text_len,
            "train": train,
            "seed": self.seed,
            "transform": build_transform(kind, self.image_size, normalize=not self.gpu_normalize),
            "num_clips": self.num_clips if split in ("test", "predict") else 1,
        }

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is not None:
            return trainer.global_rank, trainer.world_size
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def _dataset(self, source: Source, split: str) -> VideoTextDataset | ShardedVideoTextDataset:
        common = self.dataset_options(split)
        train = common["train"]
        extra = {"text_layout": self.text_layout, "sampling": self.frame_sampling}
        extra |= {"stored_frames": self.stored_frames, **self._extra_dataset_options()}
        if source.shards is not None:
            rank, world = self._rank_world()
            batch = self.batch_size if train else self.eval_batch_size
            # the shard reader decodes with a VideoTextDataset: the same text / sampling settings
            return ShardedVideoTextDataset(
                source.shards, self.tokenizer, batch_size=batch, shuffle_buffer=self.shuffle_buffer,
                rank=rank, world_size=world, drop_last=train, sample_options=extra, **common,
            )  # fmt: skip
        return VideoTextDataset(source.records(), source.video_root, self.tokenizer, **common, **extra)  # type: ignore[arg-type]

    def _extra_dataset_options(self) -> dict[str, Any]:
        return {}

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

    def predict_dataloader(self) -> list[DataLoader]:
        """One loader per prediction source (the test sources when ``predict`` is not set)."""
        split = "predict" if self.datasets.get("predict") else "test"
        return [self._loader(d, train=False) for d in self.datasets.get(split, [])]


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
    """Multiple choice: MSRVTT-MC / LSMDC-MC with the VTM head (``text_layout="choice"``, the default for
    multiple-choice records: ``option_ids [b, 5, L]``) or TGIF-Action / Transition with the options in the
    prompt (``benchmark="tgif_action"`` or ``text_layout="mc_prompt"``: ``text_ids [b, L + 3]``,
    ``answer_ids`` at the ``[MASK]``). Synthetic: an MSRVTT-MC-layout file whose options are captions (one
    true), or with ``mc_prompt`` the TGIF-Action-layout files.

    Args:
        shuffle_options: Present each training question's options in a fresh random order every epoch (the
            label follows its option), so that a question cannot be fitted by remembering its answer's index.
            Off by default: the release trains on the annotation's order.
        *args: See :class:`VideoTextDataModule`.
        **kwargs: See :class:`VideoTextDataModule`.
    """

    synthetic_files: ClassVar = {
        "train": ("msrvtt_mc_csv", "mc_train", {}, None),
        "val": ("msrvtt_mc_csv", "mc_test", {}, None),
        "test": ("msrvtt_mc_csv", "mc_test", {}, None),
    }
    synthetic_prompt_files: ClassVar = {
        "train": ("tgif_action_csv", "action_train", {}, None),
        "val": ("tgif_action_csv", "action_test", {}, None),
        "test": ("tgif_action_csv", "action_test", {}, None),
    }

    def __init__(self, *args: Any, shuffle_options: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shuffle_options = shuffle_options

    def _synthetic_files(self) -> dict[str, tuple[str, str, dict[str, Any], str | None]]:
        return self.synthetic_prompt_files if self.text_layout == "mc_prompt" else self.synthetic_files

    def _extra_dataset_options(self) -> dict[str, Any]:
        return {"shuffle_options": self.shuffle_options}


class QADataModule(VideoTextDataModule):
    """Open-ended QA and fill-in-the-blank (TGIF-Frame, MSRVTT-QA, MSVD-QA, LSMDC-FiB).

    MLM head (default): the ``qa`` layout ``[CLS] question answer : [MASK] [SEP]`` (``L + 5``) or, for
    fill-in-the-blank records / ``benchmark="lsmdc_fib"``, the sentence with its blank as ``[MASK]``;
    ``answer_ids`` holds the answer's id at the ``[MASK]`` (-100 when it is not one vocabulary entry).

    Classifier head (``classifier=True``): an answer vocabulary is built from the *training* answers, most
    frequent first, capped at ``answer_vocab_size`` (default: the benchmark's published size, e.g. 1540 for
    TGIF-Frame; None = every answer); ``label`` = the answer's index, -100 outside the vocabulary (still
    counted in accuracy). Open-QA text is then the bare question in the ``caption`` layout (the release's
    ``main_qaoe.py`` classifier reads its ``[CLS]``) unless ``text_layout`` says otherwise; FiB keeps
    ``fill_blank`` (the release's FiB classifier reads the ``[MASK]``). :attr:`num_answers` gives its size for ``LightningCLI.link_arguments``
    (``apply_on="instantiate"``); it reads the training annotations on first access.

    Synthetic: TGIF-FrameQA layout (the LSMDC-FiB layout with ``fill_blank``).

    Args:
        classifier: Build the answer vocabulary and give class labels.
        answer_vocab_size: Largest answer vocabulary (None: the benchmark's published size, or all answers).
        *args: See :class:`VideoTextDataModule`.
        **kwargs: See :class:`VideoTextDataModule`.
    """

    synthetic_files: ClassVar = {
        "train": ("tgif_frameqa_csv", "frameqa_train", {}, None),
        "val": ("tgif_frameqa_csv", "frameqa_test", {}, None),
        "test": ("tgif_frameqa_csv", "frameqa_test", {}, None),
    }
    synthetic_fib_files: ClassVar = {
        "train": ("lsmdc_fib_csv", "fib_train", {}, None),
        "val": ("lsmdc_fib_csv", "fib_test", {}, None),
        "test": ("lsmdc_fib_csv", "fib_test", {}, None),
    }

    def __init__(
        self, *args: Any, classifier: bool = False, answer_vocab_size: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        if classifier and kwargs.get("text_layout") is None and self.text_layout == "qa":
            self.text_layout = (
                None  # per record: open QA -> the bare question (caption layout), FiB -> fill_blank
            )
        self.classifier = classifier
        self.answer_vocab_size = answer_vocab_size or _preset(self.benchmark).get("answer_vocab_size")
        self._answer_vocab: list[str] | None = None

    def _synthetic_files(self) -> dict[str, tuple[str, str, dict[str, Any], str | None]]:
        return self.synthetic_fib_files if self.text_layout == "fill_blank" else self.synthetic_files

    @property
    def answer_vocab(self) -> list[str] | None:
        """The classifier's answers in class order (None without ``classifier``); read lazily."""
        if not self.classifier:
            return None
        if self._answer_vocab is None:
            sources = self._synthetic_sources()["train"] if self.synthetic else self.sources["train"]
            if not sources or any(s.shards is not None for s in sources):
                raise ValueError(
                    f"{type(self).__name__}(classifier=True) builds its answer vocabulary from annotation "
                    f"training sources; got train={sources}"
                )
            answers = [r.answer for s in sources for r in s.records()]
            self._answer_vocab = answer_vocabulary(answers, self.answer_vocab_size)
        return self._answer_vocab

    @property
    def num_answers(self) -> int:
        """Classes of the classifier head (0 without ``classifier``)."""
        vocab = self.answer_vocab
        return 0 if vocab is None else len(vocab)

    def _extra_dataset_options(self) -> dict[str, Any]:
        return {"answer_vocab": self.answer_vocab}


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
