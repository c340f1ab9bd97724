"""VioletBackbone: video + text -> joint sequence; VioletModel: backbone + VTM/MLM/MVM heads.

Layouts: video ``[b, t, c, h, w]`` (RGB, ImageNet-normalised, frames in temporal order), text ids and mask
``[b, l]``. The joint sequence is ``[video tokens (t * (1 + gh*gw)), text tokens (l)]``; every head reads the
text ``[CLS]``, the first text token, at index ``t * (1 + gh*gw)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from einops import rearrange
from torch import Tensor, nn

from ..config import CheckpointMode, VioletConfig, checkpoint_mode
from .encoders import TextEmbeddings, VideoEncoder
from .fusion import FusionTransformer, bidirectional_mask, seq2seq_mask
from .heads import MLMHead, VTMHead, build_mvm_head, init_weights

__all__ = ["VioletBackbone", "VioletModel", "FusedSequence", "AttentionMode"]

AttentionMode = Literal["bidirectional", "seq2seq"]


@dataclass
class FusedSequence:
    """Output of the cross-modal transformer with the bookkeeping to slice it.

    Attributes:
        hidden: ``[b, n, d]`` joint sequence (video tokens then text tokens).
        frames: Number of video frames ``t`` in the sequence.
        grid: ``(gh, gw)`` patch grid of each frame.
        attention: ``[b, n]`` attention received per key position (only when asked for).
    """

    hidden: Tensor
    frames: int
    grid: tuple[int, int]
    attention: Tensor | None = None

    @property
    def num_video_tokens(self) -> int:
        return self.frames * (1 + self.grid[0] * self.grid[1])

    @property
    def cls(self) -> Tensor:
        """``[b, d]`` text [CLS] (the pooled output every head uses)."""
        return self.hidden[:, self.num_video_tokens]

    @property
    def text(self) -> Tensor:
        """``[b, l, d]`` text positions."""
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

    def set_gradient_checkpointing(self, mode: CheckpointMode | bool = "all") -> None:
        """Activation checkpointing: ``"none"``, ``"video"`` (Video Swin blocks, as published), ``"fusion"``
        (fusion layers) or ``"all"``; a bool as before (True = ``"all"``)."""
        mode = checkpoint_mode(mode)
        self.video.swin.set_gradient_checkpointing(mode in ("video", "all"))
        self.fusion.gradient_checkpointing = mode in ("fusion", "all")

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
    ) -> FusedSequence:
        """Run the cross-modal transformer on pre-encoded video tokens and text ids."""
        x = torch.cat([video_tokens, self.text(text_ids)], dim=1)
        video_mask = torch.ones(video_tokens.shape[:2], dtype=torch.long, device=x.device)
        if mode == "bidirectional":
            mask = bidirectional_mask(video_mask, text_mask)
        elif mode == "seq2seq":
            mask = seq2seq_mask(video_mask, text_mask)
        else:
            raise ValueError(f"mode must be 'bidirectional' or 'seq2seq', got {mode!r}")
        if return_attention:
            hidden, attention = self.fusion.attention_received(x, mask)
            return FusedSequence(hidden, frames, grid, attention)
        return FusedSequence(self.fusion(x, mask), frames, grid)

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
    """

    def __init__(
        self, cfg: VioletConfig, *, vtm: bool = True, mlm: bool = True, mvm: tuple[str, ...] | list[str] = ()
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = VioletBackbone(cfg)
        self.vtm_head = VTMHead(cfg.hidden_size, cfg.dropout) if vtm else None
        self.mlm_head = MLMHead(cfg.hidden_size, cfg.vocab_size, cfg.layer_norm_eps) if mlm else None
        self.mvm_heads = nn.ModuleDict(
            {k: build_mvm_head(k, cfg.hidden_size, cfg.video_stride, cfg.mvm_feature_dim) for k in mvm}
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
