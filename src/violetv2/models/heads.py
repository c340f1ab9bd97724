"""Prediction heads on top of the cross-modal transformer.

- :class:`VTMHead`: video-text matching score from the pooled text ``[CLS]`` (also retrieval / MC scoring).
- :class:`ClassifierHead`: the same MLP with ``num_classes`` outputs (open-ended QA over an answer vocabulary).
- :class:`MLMHead`: BERT masked-language-model head over the vocabulary (not tied to the embeddings).
- :class:`FeatureHead`: MLP regressing per-patch features (SIF / VidSwin / CLIP MVM targets).
- :class:`PixelShuffleHead`: 1x1 conv + PixelShuffle from the token grid back to a dense map (pixel, HOG,
  depth, flow MVM targets; the VQ head is one of these followed by a per-cell classifier).

MVM heads take video *patch* tokens laid out ``[b, t, h*w, d]`` (frame [CLS] tokens removed).
"""

from __future__ import annotations

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

__all__ = ["ClassifierHead", "VTMHead", "MLMHead", "FeatureHead", "PixelShuffleHead", "VQHead"]


class ClassifierHead(nn.Module):
    """Dropout -> Linear(d, 2d) -> ReLU -> Linear(2d, num_classes) on a pooled ``[b, d]`` vector.

    The release's open-ended QA classifier (``VIOLET_QAOE``: its ``fc`` with ``size_vocab`` outputs).
    """

    def __init__(self, hidden_size: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.dropout = nn.Dropout(dropout)
        self.fc1 = nn.Linear(hidden_size, 2 * hidden_size)
        self.fc2 = nn.Linear(2 * hidden_size, num_classes)

    def forward(self, pooled: Tensor) -> Tensor:  # [b, d] -> [b, num_classes]
        return self.fc2(F.relu(self.fc1(self.dropout(pooled))))


class VTMHead(ClassifierHead):
    """Dropout -> Linear(d, 2d) -> ReLU -> Linear(2d, 1): one logit per pooled ``[b, d]`` vector."""

    def __init__(self, hidden_size: int, dropout: float = 0.1) -> None:
        super().__init__(hidden_size, 1, dropout)

    def forward(self, pooled: Tensor) -> Tensor:  # [b, d] -> [b]
        return super().forward(pooled).squeeze(-1)


class MLMHead(nn.Module):
    """BERT MLM head: dense -> erf-GELU -> LayerNorm -> decoder (with its own output bias)."""

    def __init__(self, hidden_size: int, vocab_size: int, eps: float = 1e-12) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=eps)
        self.decoder = nn.Linear(hidden_size, vocab_size)

    def forward(self, x: Tensor) -> Tensor:  # [..., d] -> [..., vocab]
        return self.decoder(self.norm(F.gelu(self.dense(x))))


class FeatureHead(nn.Module):
    """Dropout -> Linear(d, 2d) -> ReLU -> Linear(2d, out) applied to every patch token."""

    def __init__(self, hidden_size: int, out_dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc1 = nn.Linear(hidden_size, 2 * hidden_size)
        self.fc2 = nn.Linear(2 * hidden_size, out_dim)

    def forward(self, patches: Tensor) -> Tensor:  # [b, t, n, d] -> [b, t, n, out]
        return self.fc2(F.relu(self.fc1(self.dropout(patches))))


class PixelShuffleHead(nn.Module):
    """1x1 conv to ``channels * upscale**2`` then PixelShuffle: ``[b, t, h*w, d] -> [b, t, c, h*u, w*u]``.

    Args:
        in_dim: Token width (``2 * hidden`` for flow, whose input pairs consecutive frames).
        channels: Output channels per position of the dense map.
        upscale: Output positions per token along each side (32 for pixels, 32/8 = 4 for 8x8 HOG cells).
    """

    def __init__(self, in_dim: int, channels: int, upscale: int) -> None:
        super().__init__()
        self.channels, self.upscale = channels, upscale
        self.conv = nn.Conv2d(in_dim, channels * upscale * upscale, kernel_size=1)
        self.shuffle = nn.PixelShuffle(upscale)

    def forward(self, patches: Tensor) -> Tensor:
        b, t, n, _ = patches.shape
        side = int(round(n**0.5))
        if side * side != n:
            raise ValueError(f"PixelShuffleHead needs a square token grid, got {n} tokens per frame")
        x = rearrange(patches, "b t (h w) d -> (b t) d h w", h=side)
        x = self.shuffle(self.conv(x))
        return rearrange(x, "(b t) c h w -> b t c h w", b=b)


class VQHead(nn.Module):
    """Discrete visual tokens: PixelShuffle to one ``code_dim`` vector per cell, then an MLP classifier.

    Output ``[b, t, h*u, w*u, num_codes]`` logits (``u = patch / cell``, 4 for 32-px patches, 8-px cells).
    """

    def __init__(self, hidden_size: int, upscale: int, num_codes: int = 8192, code_dim: int = 96) -> None:
        super().__init__()
        self.decoder = PixelShuffleHead(hidden_size, code_dim, upscale)
        self.fc1 = nn.Linear(code_dim, 2 * code_dim)
        self.fc2 = nn.Linear(2 * code_dim, num_codes)

    def forward(self, patches: Tensor) -> Tensor:
        x = rearrange(self.decoder(patches), "b t c h w -> b t h w c")
        return self.fc2(F.relu(self.fc1(x)))


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """BERT-style init: normal(0, std) weights, zero biases, unit LayerNorms."""
    if isinstance(module, nn.Linear | nn.Conv2d | nn.Conv3d):
        nn.init.trunc_normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=std)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def build_mvm_head(kind: str, hidden_size: int, stride: int = 32, feature_dim: int = 1024) -> nn.Module:
    """The prediction head of an MVM target, by target name.

    Args:
        kind: ``pixel``, ``hog`` (MaskFeat histograms: 27 = 3 channels x 9 bins per 8x8 cell), ``hog_release``
            (the release's 1-channel scikit-image HOG picture), ``depth``, ``flow`` (input: two consecutive frames'
            tokens, 2d), ``vq`` (8192 codes per 8x8 cell), ``vq_patch`` (VIOLET v1: one code per patch), ``sif``,
            ``vidswin`` (``feature_dim`` features per patch), ``clip`` (768 per patch).
        hidden_size: Token width d.
        stride: Pixels per token side (32).
        feature_dim: Output width of the feature-regression heads.
    """
    cell = stride // 8
    heads = {
        "pixel": lambda: PixelShuffleHead(hidden_size, 3, stride),
        "hog": lambda: PixelShuffleHead(hidden_size, 27, cell),
        "hog_release": lambda: PixelShuffleHead(hidden_size, 1, stride),
        "depth": lambda: PixelShuffleHead(hidden_size, 1, stride),
        "flow": lambda: PixelShuffleHead(2 * hidden_size, 2, stride),
        "vq": lambda: VQHead(hidden_size, cell),
        "vq_patch": lambda: FeatureHead(hidden_size, 8192),
        "sif": lambda: FeatureHead(hidden_size, feature_dim),
        "vidswin": lambda: FeatureHead(hidden_size, feature_dim),
        "clip": lambda: FeatureHead(hidden_size, 768),
    }
    if kind not in heads:
        raise ValueError(f"unknown MVM head {kind!r}; known: {', '.join(sorted(heads))}")
    return heads[kind]()
