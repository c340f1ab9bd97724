"""VioletBackbone: video + text -> joint sequence; VioletModel: backbone + VTM/MLM/MVM heads.

Layouts: video ``[b, t, c, h, w]`` (RGB, ImageNet-normalised, frames in temporal order), text ids and mask
``[b, l]``. The joint sequence is ``[video tokens (t * (1 + gh*gw)), text tokens (l)]``; every head reads the
text ``[CLS]``, the first text token, at index ``t * (1 + gh*gw)``.

Task token (the release's ``enable_task_token``): with a task embedding passed to :meth:`VioletBackbone.fuse`,
one extra token -- the raw row of ``VioletModel.task_embedding`` (no position / type embedding, no LayerNorm),
always attended -- sits between the video tokens and the text ``[CLS]``, which moves one position right.
Rows (:data:`TASK_ROWS`): vtm 0, mc 1, oe 2, cap 3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from einops import rearrange
from torch import Tensor, nn

from ..config import VioletConfig
from .encoders import TextEmbeddings, VideoEncoder
from .fusion import FusionTransformer, bidirectional_mask, seq2seq_mask
from .heads import ClassifierHead, MLMHead, VTMHead, build_mvm_head, init_weights

__all__ = ["TASK_ROWS", "VioletBackbone", "VioletModel", "FusedSequence", "AttentionMode"]

AttentionMode = Literal["bidirectional", "seq2seq"]

TASK_ROWS = {"vtm": 0, "mc": 1, "oe": 2, "cap": 3}
"""Rows of the release's ``emb_task`` table by task name (rows 4-9 exist but are never used)."""
NUM_TASK_ROWS = 10


@dataclass
class FusedSequence:
    """Output of the cross-modal transformer with the bookkeeping to slice it.

    Attributes:
        hidden: ``[b, n, d]`` joint sequence (video tokens then text tokens).
        frames: Number of video frames ``t`` in the sequence.
        grid: ``(gh, gw)`` patch grid of each frame.
        attention: ``[b, n]`` attention received per key position (only when asked for).
        prefix: Tokens between the video and the text (1 with a task token, else 0).
    """

    hidden: Tensor
    frames: int
    grid: tuple[int, int]
    attention: Tensor | None = None
    prefix: int = 0

    @property
    def num_video_tokens(self) -> int:
        return self.frames * (1 + self.grid[0] * self.grid[1])

    @property
    def text_start(self) -> int:
        """Fused index of the text ``[CLS]``."""
        return self.num_video_tokens + self.prefix

    @property
    def cls(self) -> Tensor:
        """``[b, d]`` text [CLS] (the pooled output every head uses)."""
        return self.hidden[:, self.text_start]

    @property
    def text(self) -> Tensor:
        """``[b, l, d]`` text positions (the task token, if any, excluded)."""
        return self.hidden[:, self.text_start :]

    @property
    def after_video(self) -> Tensor:
        """``[b, prefix + l, d]``: everything after the video tokens (task token first), where the release
        applies its MLM head."""
        return self.hidden[:, self.num_video_tokens :]

    @property
    def video_patches(self) -> Tensor:
        """``[b, t, gh*gw, d]`` video patch tokens (frame [CLS] tokens dropped)."""
        video = rearrange(self.hidden[:, : self.num_video_tokens], "b (t n) d -> b t n d", t=self.frames)
        return video[:, :, 1:]


class VioletBackbone(nn.Module):
    """Video encoder, text embeddings and cross-modal transformer.

    ``forward(video, text_ids, text_mask, mode)`` returns the :class:`FusedSequence`; the pieces are exposed
    separately so a caller can encode a video once and fuse it with many texts (retrieval, VTM negatives).
    """

    def __init__(self, cfg: VioletConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.video = VideoEncoder(cfg)
        self.text = TextEmbeddings(cfg)
        self.fusion = FusionTransformer(cfg)
        self.set_gradient_checkpointing(cfg.gradient_checkpointing)

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Activation checkpointing of Video Swin blocks and fusion layers."""
        self.video.swin.set_gradient_checkpointing(enabled)
        self.fusion.gradient_checkpointing = enabled

    def encode_video(self, video: Tensor) -> Tensor:
        """``[b, t, c, h, w] -> [b, t * (1 + gh*gw), d]`` video tokens."""
        return self.video(video)

    def grid(self, video: Tensor) -> tuple[int, int]:
        """Token grid of a clip of this frame size."""
        stride = self.cfg.video_stride
        return (-(-video.shape[-2] // stride), -(-video.shape[-1] // stride))

    def fuse(
        self,
        video_tokens: Tensor,
        text_ids: Tensor,
        text_mask: Tensor,
        *,
        frames: int,
        grid: tuple[int, int],
        mode: AttentionMode = "bidirectional",
        return_attention: bool = False,
        task_embedding: Tensor | None = None,
    ) -> FusedSequence:
        """Run the cross-modal transformer on pre-encoded video tokens and text ids.

        Args:
            video_tokens: ``[b, nv, d]`` from :meth:`encode_video`.
            text_ids: ``[b, l]`` token ids.
            text_mask: ``[b, l]`` 1 on real tokens.
            frames: Frames ``t`` behind the video tokens.
            grid: Token grid ``(gh, gw)`` of a frame.
            mode: ``bidirectional`` (padding masked) or ``seq2seq`` (captioning; padding not masked).
            return_attention: Also return the attention each key position receives.
            task_embedding: ``[d]`` or ``[b, d]`` task token inserted after the video tokens (always attended:
                in ``seq2seq`` mode it is visible to every row, like the video).
        """
        prefix = self.prefix_tokens(video_tokens, task_embedding)
        x = torch.cat([prefix, self.text(text_ids)], dim=1)
        prefix_mask = torch.ones(prefix.shape[:2], dtype=torch.long, device=x.device)
        if mode == "bidirectional":
            mask = bidirectional_mask(prefix_mask, text_mask)
        elif mode == "seq2seq":
            mask = seq2seq_mask(prefix_mask, text_mask)
        else:
            raise ValueError(f"mode must be 'bidirectional' or 'seq2seq', got {mode!r}")
        extra = prefix.shape[1] - video_tokens.shape[1]
        if return_attention:
            hidden, attention = self.fusion.attention_received(x, mask)
            return FusedSequence(hidden, frames, grid, attention, prefix=extra)
        return FusedSequence(self.fusion(x, mask), frames, grid, prefix=extra)

    @staticmethod
    def prefix_tokens(video_tokens: Tensor, task_embedding: Tensor | None) -> Tensor:
        """Video tokens, followed by the task token when one is given."""
        if task_embedding is None:
            return video_tokens
        b, _, d = video_tokens.shape
        if task_embedding.shape[-1] != d or task_embedding.dim() not in (1, 2):
            raise ValueError(
                f"task_embedding must be [d] or [b, d] with d={d}, got {tuple(task_embedding.shape)}"
            )
        task = task_embedding.to(video_tokens.dtype).expand(b, d)[:, None]
        return torch.cat([video_tokens, task], dim=1)

    def forward(
        self,
        video: Tensor,
        text_ids: Tensor,
        text_mask: Tensor,
        mode: AttentionMode = "bidirectional",
        return_attention: bool = False,
    ) -> FusedSequence:
        """Joint sequence for a ``[b, t, c, h, w]`` clip batch and ``[b, l]`` texts."""
        grid = self.grid(video)
        tokens = self.encode_video(video)
        frames = tokens.shape[1] // (1 + grid[0] * grid[1])
        return self.fuse(
            tokens,
            text_ids,
            text_mask,
            frames=frames,
            grid=grid,
            mode=mode,
            return_attention=return_attention,
        )


class VioletModel(nn.Module):
    """Backbone plus heads: VTM (matching / retrieval / MC scoring), MLM (QA, FiB, captioning) and MVM heads.

    Args:
        cfg: Architecture.
        vtm: Build the VTM head (absent from the release's MLM-answered downstream models).
        mlm: Build the MLM head (absent from its retrieval / multiple-choice models).
        mvm: Names of MVM heads to build (see :func:`violetv2.models.heads.build_mvm_head`);
            ``("sif",)`` for the published pre-training model.
        task_embedding: Build the ``[10, d]`` task-token table (the release's ``emb_task``, present in its
            MLM-head downstream models).
        num_answers: Build an answer classifier with this many classes (open-ended QA, ``VIOLET_QAOE``).
    """

    def __init__(
        self,
        cfg: VioletConfig,
        *,
        vtm: bool = True,
        mlm: bool = True,
        mvm: tuple[str, ...] | list[str] = (),
        task_embedding: bool = False,
        num_answers: int | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = VioletBackbone(cfg)
        self.vtm_head = VTMHead(cfg.hidden_size, cfg.dropout) if vtm else None
        self.mlm_head = MLMHead(cfg.hidden_size, cfg.vocab_size, cfg.layer_norm_eps) if mlm else None
        self.mvm_heads = nn.ModuleDict(
            {k: build_mvm_head(k, cfg.hidden_size, cfg.video_stride, cfg.mvm_feature_dim) for k in mvm}
        )
        self.task_embedding = (
            nn.Parameter(torch.zeros(NUM_TASK_ROWS, cfg.hidden_size)) if task_embedding else None
        )
        self.answer_head = (
            ClassifierHead(cfg.hidden_size, num_answers, cfg.dropout) if num_answers is not None else None
        )
        self.reset_parameters()

    @classmethod
    def published(cls, cfg: VioletConfig) -> VioletModel:
        """The published pre-training model: VTM, MLM and the SIF feature-regression MVM head."""
        return cls(cfg, mvm=("sif",))

    def reset_parameters(self) -> None:
        """BERT-style random init of every Linear / Embedding / LayerNorm (tables keep their own init)."""
        if next(self.parameters()).device.type == "meta":
            return
        self.apply(lambda m: init_weights(m, self.cfg.initializer_range))
        if self.task_embedding is not None:  # the release: 0.02 * randn(10, d)
            nn.init.normal_(self.task_embedding, std=self.cfg.initializer_range)

    def task_token(self, task: str | int) -> Tensor:
        """``[d]`` task-token row by name (:data:`TASK_ROWS`) or index."""
        if self.task_embedding is None:
            raise ValueError("this model has no task embedding (build it with task_embedding=True)")
        row = TASK_ROWS[task] if isinstance(task, str) else int(task)
        if not 0 <= row < self.task_embedding.shape[0]:
            raise ValueError(f"task row {task!r} outside 0..{self.task_embedding.shape[0] - 1}")
        return self.task_embedding[row]

    def forward(
        self, video: Tensor, text_ids: Tensor, text_mask: Tensor, mode: AttentionMode = "bidirectional"
    ) -> FusedSequence:
        return self.backbone(video, text_ids, text_mask, mode)

    def vtm_logits(self, fused: FusedSequence) -> Tensor:
        """``[b]`` raw matching logits from the text [CLS]."""
        return self.vtm_head(fused.cls)

    def mlm_logits(self, fused: FusedSequence) -> Tensor:
        """``[b, l, vocab]`` MLM logits at the text positions."""
        return self.mlm_head(fused.text)

    def answer_logits(self, fused: FusedSequence) -> Tensor:
        """``[b, num_answers]`` answer-classifier logits from the text [CLS]."""
        if self.answer_head is None:
            raise ValueError("this model has no answer classifier (build it with num_answers=N)")
        return self.answer_head(fused.cls)
