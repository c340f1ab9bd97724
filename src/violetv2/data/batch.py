"""The one batch schema every datamodule produces and every task module consumes.

Layouts (one axis vocabulary across the package):

- ``video``: float ``[b, t, c, h, w]``, RGB, ImageNet-normalised, frames in temporal order. Images are
  ``t = 1`` clips (the model repeats nothing; it simply sees one frame).
- ``text_ids`` / ``text_mask``: long ``[b, l]``, ``[CLS] ... [SEP] [PAD]...``; mask 1 on real tokens.
- Task fields are ``None`` when a task does not use them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch
from torch import Tensor

__all__ = ["VideoTextBatch"]


@dataclass
class VideoTextBatch:
    """A collated batch.

    Attributes:
        video: ``[b, t, c, h, w]`` float clips, ImageNet-normalised.
        text_ids: ``[b, l]`` token ids (caption, or question/prompt for QA tasks).
        text_mask: ``[b, l]`` 1 for real tokens, 0 for padding.
        sample_ids: One id per sample (unique within a split).
        video_ids: The video each sample comes from (several samples may share one).
        is_image: ``[b]`` bool, True for still images (``t == 1`` sources such as CC3M).
        option_ids: ``[b, o, l]`` multiple-choice options, each a full text (question + option).
        option_mask: ``[b, o, l]`` mask for ``option_ids``.
        label: ``[b]`` long: index of the correct option (multiple choice) or answer class (QA classifier).
        answer_ids: ``[b, l]`` long MLM targets aligned with ``text_ids`` (-100 where nothing is predicted),
            for open-ended QA / fill-in-the-blank answered with the MLM head, and for captioning.
        answers: The answer strings (open-ended QA), or the list of reference captions per sample (captioning).
        skipped: Unreadable samples replaced while building this batch (logged as ``data/skipped``).
        num_clips: Clips per video; with ``n > 1`` (multi-clip testing) every row is repeated per clip as
            ``(b n)`` rows and a task averages its scores with ``rearrange(s, "(b n) ... -> b n ...", n=n).mean(1)``.
        index: ``[b]`` long: each sample's position in its dataset (repeated per clip like every other field),
            for metrics that drop the duplicates a distributed sampler pads with.
        clip_valid: ``[(b n)]`` bool, only when the samples of a batch have different clip counts
            (``num_clips="all"``): False on the padding clips (copies of a sample's last clip) that make every
            sample ``n`` rows; average with it as weights. ``None`` when every clip is real.
    """

    video: Tensor
    text_ids: Tensor
    text_mask: Tensor
    sample_ids: list[str] = field(default_factory=list)
    video_ids: list[str] = field(default_factory=list)
    is_image: Tensor | None = None
    option_ids: Tensor | None = None
    option_mask: Tensor | None = None
    label: Tensor | None = None
    answer_ids: Tensor | None = None
    answers: list[str] | list[list[str]] | None = None
    skipped: int = 0
    num_clips: int = 1
    index: Tensor | None = None
    clip_valid: Tensor | None = None

    def __post_init__(self) -> None:
        if self.video.dim() != 5:
            raise ValueError(f"video must be [b, t, c, h, w], got shape {tuple(self.video.shape)}")
        if self.text_ids.shape != self.text_mask.shape:
            raise ValueError(
                f"text_ids {tuple(self.text_ids.shape)} and text_mask {tuple(self.text_mask.shape)} differ"
            )
        if self.text_ids.shape[0] != self.video.shape[0]:
            raise ValueError(
                f"batch sizes differ: video {self.video.shape[0]}, text {self.text_ids.shape[0]}"
            )

    def __len__(self) -> int:
        return self.video.shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> VideoTextBatch:
        """A copy with every tensor moved to ``device``."""
        moved = {
            f.name: v.to(device, non_blocking=non_blocking)
            for f in fields(self)
            if isinstance(v := getattr(self, f.name), Tensor)
        }
        return replace(self, **moved)

    def pin_memory(self) -> VideoTextBatch:
        """Pinned copy (called by the DataLoader when ``pin_memory=True``)."""
        pinned = {
            f.name: v.pin_memory() for f in fields(self) if isinstance(v := getattr(self, f.name), Tensor)
        }
        return replace(self, **pinned)
