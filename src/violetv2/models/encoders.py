"""Token encoders: video (Video Swin features -> tokens) and text (BERT embeddings only)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..config import VioletConfig
from .video_swin import VideoSwin

__all__ = ["VideoEncoder", "TextEmbeddings"]


class VideoEncoder(nn.Module):
    """Video Swin + token projection: ``[b, t, c, h, w] -> [b, t * (1 + gh*gw), d]``.

    Every frame contributes a learned frame ``[CLS]`` followed by its ``gh*gw`` patch tokens (patch index
    ``h * gw + w``); a spatial table entry (same for every frame) and a temporal table entry (one per frame)
    are added, then LayerNorm. Tokens are flattened frame-major: token ``(1 + gh*gw) * t + j``.
    """

    def __init__(self, cfg: VioletConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.swin = VideoSwin(
            embed_dim=cfg.swin_embed_dim,
            depths=cfg.swin_depths,
            heads=cfg.swin_heads,
            window=cfg.swin_window,
            patch=cfg.swin_patch,
            temporal_stride=cfg.swin_temporal_stride,
            mlp_ratio=cfg.swin_mlp_ratio,
            drop_path=cfg.swin_drop_path,
            eps=cfg.swin_norm_eps,
        )
        d = cfg.hidden_size
        self.fc = nn.Linear(self.swin.out_dim, d) if cfg.video_projection else nn.Identity()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 1, d))
        self.spatial_pos = nn.Parameter(torch.zeros(1, 1, 1 + cfg.max_grid**2, d))
        self.temporal_pos = nn.Parameter(torch.zeros(1, cfg.max_frames, 1, d))
        self.norm = nn.LayerNorm(d, eps=cfg.swin_norm_eps)
        for p in (self.cls_token, self.spatial_pos, self.temporal_pos):
            nn.init.trunc_normal_(p, std=0.02)

    def features(self, video: Tensor) -> Tensor:
        """Video Swin output ``[b, C, t', gh, gw]`` for a ``[b, t, c, h, w]`` clip."""
        return self.swin(rearrange(video, "b t c h w -> b c t h w"))

    def forward(self, video: Tensor) -> Tensor:
        return self.tokens(self.features(video))

    def tokens(self, feats: Tensor) -> Tensor:
        """Video tokens ``[b, t * (1 + gh*gw), d]`` from Video Swin features ``[b, C, t, gh, gw]``."""
        b, _, t, gh, gw = feats.shape
        if t > self.cfg.max_frames:
            raise ValueError(f"{t} feature frames exceed the temporal table ({self.cfg.max_frames} rows)")
        x = self.fc(rearrange(feats, "b c t h w -> b t (h w) c"))
        x = torch.cat([self.cls_token.expand(b, t, 1, -1), x], dim=2)  # [b, t, 1 + gh*gw, d]
        x = x + self.spatial_table(gh, gw) + self.temporal_pos[:, :t]
        return rearrange(self.norm(x), "b t n d -> b (t n) d")

    def spatial_table(self, gh: int, gw: int) -> Tensor:
        """``[1, 1, 1 + gh*gw, d]`` spatial embeddings for a ``gh x gw`` grid (see ``cfg.spatial_pos``)."""
        table = self.spatial_pos
        if self.cfg.spatial_pos == "flat":
            if 1 + gh * gw > table.shape[2]:
                raise ValueError(
                    f"a {gh}x{gw} token grid needs {1 + gh * gw} spatial positions, the table has "
                    f"{table.shape[2]}; use spatial_pos='interpolate'"
                )
            return table[:, :, : 1 + gh * gw]
        g = self.cfg.max_grid
        grid = rearrange(table[0, 0, 1:], "(h w) d -> 1 d h w", h=g)
        if (gh, gw) != (g, g):
            grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False)
        grid = rearrange(grid, "1 d h w -> 1 1 (h w) d")
        return torch.cat([table[:, :, :1], grid], dim=2)


class TextEmbeddings(nn.Module):
    """BERT embeddings (word + position + token type 0, LayerNorm, dropout); no text-only layers.

    Positions restart at 0 for the text although it follows the video tokens in the joint sequence.
    """

    def __init__(self, cfg: VioletConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.word_embeddings = nn.Embedding(cfg.vocab_size, d, padding_idx=0)
        self.position_embeddings = nn.Embedding(cfg.max_text_positions, d)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, d)
        self.norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, ids: Tensor) -> Tensor:  # [b, l] -> [b, l, d]
        length = ids.shape[1]
        if length > self.position_embeddings.num_embeddings:
            raise ValueError(
                f"text length {length} exceeds {self.position_embeddings.num_embeddings} positions"
            )
        pos = torch.arange(length, device=ids.device)
        x = self.word_embeddings(ids) + self.position_embeddings(pos) + self.token_type_embeddings.weight[0]
        return self.dropout(self.norm(x))
