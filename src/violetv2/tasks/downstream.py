"""What every downstream task module shares: special tokens, clip averaging, the task token, [MASK] lookup.

Multi-clip batches (``batch.num_clips = n > 1``, rows laid out ``(b n)``) are reduced once, at the video
tokens: the tokens of a video's ``n`` clips (after the video LayerNorm) are averaged, as the release's
retrieval test path does, and every other field is read from the first row of each group. Each task then
works on ``b`` videos.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from einops import rearrange
from torch import Tensor, nn

from ..data.batch import VideoTextBatch
from ..metrics import AccuracyMetric
from ..models.violet import TASK_ROWS, AttentionMode, FusedSequence
from .base import VioletModule
from .losses import IGNORE_INDEX
from .pretrain import SpecialTokens

__all__ = ["DownstreamModule", "VideoTokens", "average_clips", "first_of_clips", "mask_positions"]


@dataclass
class VideoTokens:
    """Encoded videos ready to fuse with texts.

    Attributes:
        tokens: ``[b, nv, d]`` video tokens (clip-averaged for multi-clip batches).
        frames: Frames ``t`` behind the tokens.
        grid: Token grid ``(gh, gw)`` of a frame.
    """

    tokens: Tensor
    frames: int
    grid: tuple[int, int]

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def select(self, index: Tensor | slice) -> VideoTokens:
        """The tokens of some videos (rows), e.g. ``tokens.select(pair_video_index)``."""
        return VideoTokens(self.tokens[index], self.frames, self.grid)


def average_clips(tokens: Tensor, num_clips: int, valid: Tensor | None = None) -> Tensor:
    """``[(b n), nv, d] -> [b, nv, d]``: mean over each video's ``n`` clips.

    Args:
        tokens: Video tokens, ``n`` consecutive rows per video.
        num_clips: Clips per video ``n``.
        valid: Optional ``[(b n)]`` bool (``batch.clip_valid``): padding clips of videos with fewer clips
            (``num_clips="all"``) are left out of their video's mean.
    """
    if num_clips == 1:
        return tokens
    if tokens.shape[0] % num_clips:
        raise ValueError(f"{tokens.shape[0]} rows are not a multiple of num_clips={num_clips}")
    clips = rearrange(tokens, "(b n) l d -> b n l d", n=num_clips)
    if valid is None:
        return clips.mean(1)
    weight = rearrange(valid.to(tokens.dtype), "(b n) -> b n 1 1", n=num_clips)
    return (clips * weight).sum(1) / weight.sum(1).clamp_min(1.0)


def first_of_clips(value: Any, num_clips: int) -> Any:
    """The first row of every group of ``num_clips`` rows (tensors and lists); ``None`` passes through."""
    if value is None or num_clips == 1:
        return value
    return value[::num_clips]


def mask_positions(
    text_ids: Tensor, mask_token_id: int, name: str = "text_ids", allow_missing: bool = False
) -> Tensor:
    """``[b]`` position of the single ``[MASK]`` in every row of ``[b, l]`` ids.

    Args:
        text_ids: ``[b, l]`` token ids.
        mask_token_id: Id of ``[MASK]``.
        name: Used in error messages.
        allow_missing: Rows without a ``[MASK]`` (a fill-in-the-blank whose blank was truncated away) get
            position -1 instead of an error.

    Raises:
        ValueError: A row with more than one ``[MASK]``, or without one unless ``allow_missing``.
    """
    is_mask = text_ids == mask_token_id
    counts = is_mask.sum(1)
    bad = (counts > 1) | ((counts == 0) & (not allow_missing))
    if bool(bad.any()):
        rows = bad.nonzero().flatten().tolist()
        raise ValueError(
            f"{name}: rows {rows[:8]} hold {counts[rows[:8]].tolist()} [MASK] tokens (id {mask_token_id}); "
            "exactly one is expected (check the text layout and the tokenizer)"
        )
    return torch.where(counts == 1, is_mask.int().argmax(1), -1)


class DownstreamModule(VioletModule):
    """Base of the downstream task modules (not used directly).

    Args:
        tokenizer: Tokenizer name or directory (special-token ids, digit ids, decoding); ``None`` =
            bert-base-uncased ids.
        task_token: Insert the task token (the release's ``enable_task_token``, off as published) between
            the video and the text. Only tasks whose release model has ``emb_task`` support it.
        **kwargs: :class:`~violetv2.VioletModule` arguments (preset, config, lr, init_checkpoint, ...).
    """

    task_row: ClassVar[str | None] = None
    """Row of the task-token table this task uses (``None``: the task has no task token)."""
    accuracies: ClassVar[tuple[str, ...]] = ()
    """Accuracy metrics logged per evaluation stage (``val/<name>``, ``test/<name>``)."""

    def __init__(self, tokenizer: str | None = None, task_token: bool = False, **kwargs: Any) -> None:
        if task_token and self.task_row is None:
            raise ValueError(f"{type(self).__name__} has no task token (the release uses none for it)")
        super().__init__(**kwargs)
        self._special: SpecialTokens | None = None
        self._tokenizer: Any = None
        self.accuracy = nn.ModuleDict(
            {f"{stage}_{name}": AccuracyMetric() for stage in ("val", "test") for name in self.accuracies}
        )

    # ------------------------------------------------------------------ evaluation
    def _evaluate(self, batch: VideoTextBatch, stage: str) -> None:
        """Accumulate one evaluation batch into the ``stage`` (``val`` / ``test``) metrics."""
        raise NotImplementedError

    def validation_step(self, batch: VideoTextBatch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._check_one_source(dataloader_idx, "validation")
        self._evaluate(batch, "val")

    def test_step(self, batch: VideoTextBatch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._check_one_source(dataloader_idx, "test")
        self._evaluate(batch, "test")

    def _check_one_source(self, dataloader_idx: int, split: str) -> None:
        # metrics de-duplicate by dataset position, which two sources share: mixing them would drop samples
        if dataloader_idx:
            raise ValueError(
                f"{type(self).__name__} evaluates one {split} source at a time, got a second one "
                f"(dataloader_idx={dataloader_idx}); run `violet {'validate' if split == 'validation' else 'test'}` "
                "once per source"
            )

    def log_train(self, out: dict[str, Tensor], batch_size: int) -> Tensor:
        """Log a training step's ``loss`` and ``acc`` (``train/...``) and return the loss."""
        self.log("train/acc", out["acc"], batch_size=batch_size)
        self.log("train/loss", out["loss"], batch_size=batch_size, prog_bar=True)
        return out["loss"]

    def log_accuracy(self, stage: str, name: str, preds: Tensor, target: Tensor, index: Tensor) -> None:
        """Accumulate ``preds`` vs ``target`` (``-100`` = never correct) and log the epoch accuracy (%)."""
        metric = self.accuracy[f"{stage}_{name}"]
        metric.update(preds, target, index)
        self.log(f"{stage}/{name}", metric, on_step=False, on_epoch=True, batch_size=target.shape[0])

    # ------------------------------------------------------------------ tokens
    @property
    def special(self) -> SpecialTokens:
        """Special-token ids, read from ``tokenizer`` on first use."""
        if self._special is None:
            self._special = SpecialTokens(self.hparams.tokenizer)
        return self._special

    @property
    def tokenizer(self) -> Any:
        """The tokenizer itself (``None`` when the module was built without one)."""
        if self._tokenizer is None and self.hparams.tokenizer is not None:
            from ..data.text import load_tokenizer

            self._tokenizer = load_tokenizer(self.hparams.tokenizer)
        return self._tokenizer

    # ------------------------------------------------------------------ forward pieces
    def encode(self, batch: VideoTextBatch) -> VideoTokens:
        """Video tokens of a batch, averaged over clips when ``batch.num_clips > 1``."""
        backbone = self.model.backbone
        grid = backbone.grid(batch.video)
        tokens = average_clips(backbone.encode_video(batch.video), batch.num_clips, batch.clip_valid)
        return VideoTokens(tokens, batch.video.shape[1], grid)

    def task_vector(self) -> Tensor | None:
        """``[d]`` task token when ``task_token`` is on, else ``None``."""
        if not self.hparams.task_token:
            return None
        return self.model.task_token(TASK_ROWS[self.task_row])

    def fuse(
        self, video: VideoTokens, text_ids: Tensor, text_mask: Tensor, mode: AttentionMode = "bidirectional"
    ) -> FusedSequence:
        """Cross-modal transformer over ``video`` (one row per text) and texts, with the task token if on."""
        return self.model.backbone.fuse(
            video.tokens,
            text_ids,
            text_mask,
            frames=video.frames,
            grid=video.grid,
            mode=mode,
            task_embedding=self.task_vector(),
        )

    # ------------------------------------------------------------------ batch fields
    @staticmethod
    def rows(batch: VideoTextBatch, name: str) -> Any:
        """A batch field reduced to one row per video (multi-clip batches)."""
        return first_of_clips(getattr(batch, name), batch.num_clips)

    def sample_index(self, batch: VideoTextBatch) -> Tensor:
        """``[b]`` dataset position of every sample (``batch.index``) for de-duplication in the metrics."""
        index = getattr(batch, "index", None)
        if index is None:  # a batch without positions: number the samples seen so far
            b = batch.video.shape[0] // batch.num_clips
            start = getattr(self, "_seen", 0)
            self._seen = start + b
            return torch.arange(start, start + b, device=batch.video.device)
        return self.rows(batch, "index").to(batch.video.device)

    @staticmethod
    def labels_at(answer_ids: Tensor | None, positions: Tensor) -> Tensor | None:
        """``answer_ids`` read at one position per row, -100 where the position is -1 (``None`` when there
        are no answer ids)."""
        if answer_ids is None:
            return None
        found = positions >= 0
        labels = answer_ids.gather(1, positions.clamp_min(0)[:, None]).squeeze(1)
        return torch.where(found, labels, torch.full_like(labels, IGNORE_INDEX))

    @staticmethod
    def require(batch: VideoTextBatch, *names: str) -> None:
        """Fail with a clear message when a task field is missing from the batch."""
        missing = [n for n in names if getattr(batch, n) is None]
        if missing:
            raise ValueError(f"batch lacks {missing}: check the DataModule feeding this task")
