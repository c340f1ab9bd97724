"""Cross-modal transformer (a BERT-base encoder over ``[video tokens, text tokens]``) and its attention masks.

Masks are boolean ``[b, 1, n, n]`` (or ``[b, 1, 1, n]``), True where a query may attend to a key:

- :func:`bidirectional_mask`: every token sees every non-padding token.
- :func:`seq2seq_mask`: video rows see the video only; text rows see all video and the text causally
  (lower triangle including the diagonal, text padding not masked), as VIOLETv2's captioning does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..config import VioletConfig

__all__ = ["FusionTransformer", "bidirectional_mask", "seq2seq_mask"]


def bidirectional_mask(video_mask: Tensor, text_mask: Tensor) -> Tensor:
    """``[b, 1, 1, n]`` key-padding mask from ``[b, nv]`` and ``[b, l]`` 0/1 masks."""
    return torch.cat([video_mask, text_mask], dim=1).bool()[:, None, None, :]


def seq2seq_mask(video_mask: Tensor, text_mask: Tensor) -> Tensor:
    """``[b, 1, n, n]`` mask: video rows -> video only; text rows -> video + causal text."""
    b, nv = video_mask.shape
    length = text_mask.shape[1]
    vm = video_mask.bool()[:, None, :].expand(b, nv + length, nv)
    causal = torch.ones(length, length, dtype=torch.bool, device=text_mask.device).tril()
    text_cols = torch.zeros(b, nv + length, length, dtype=torch.bool, device=text_mask.device)
    text_cols[:, nv:] = causal
    return torch.cat([vm, text_cols], dim=2)[:, None]


class FusionLayer(nn.Module):
    """Post-LayerNorm BERT layer: self-attention, add & norm, FFN (erf-GELU), add & norm."""

    def __init__(self, cfg: VioletConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.heads = cfg.num_heads
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.attn_out = nn.Linear(d, d)
        self.attn_norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.ffn_in = nn.Linear(d, cfg.intermediate_size)
        self.ffn_out = nn.Linear(cfg.intermediate_size, d)
        self.ffn_norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)
        self.attn_dropout = cfg.attention_dropout

    def _qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        split = "b n (h d) -> b h n d"
        return tuple(rearrange(f(x), split, h=self.heads) for f in (self.query, self.key, self.value))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        q, k, v = self._qkv(x)
        p = self.attn_dropout if self.training else 0.0
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # [b, h, n, d]
        return self._finish(x, ctx)

    def forward_with_attention(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Same as :meth:`forward` (no attention dropout) but also returns the ``[b, h, n, n]`` probabilities."""
        q, k, v = self._qkv(x)
        scores = q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5
        probs = scores.masked_fill(~mask, torch.finfo(scores.dtype).min).softmax(-1)
        return self._finish(x, probs @ v), probs

    def _finish(self, x: Tensor, ctx: Tensor) -> Tensor:
        x = self.attn_norm(x + self.dropout(self.attn_out(rearrange(ctx, "b h n d -> b n (h d)"))))
        return self.ffn_norm(x + self.dropout(self.ffn_out(F.gelu(self.ffn_in(x)))))


class FusionTransformer(nn.Module):
    """Stack of :class:`FusionLayer` over the joint sequence ``[b, n, d]``."""

    def __init__(self, cfg: VioletConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(FusionLayer(cfg) for _ in range(cfg.num_layers))
        self.gradient_checkpointing = cfg.gradient_checkpointing in ("fusion", "all")

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        for layer in self.layers:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x = checkpoint(layer, x, mask, use_reentrant=False)
            else:
                x = layer(x, mask)
        return x

    def attention_received(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Run the stack and sum, per key position, the head-averaged attention probabilities over all
        layers and all query positions. Returns ``(output [b, n, d], attention [b, n])``."""
        total = x.new_zeros(x.shape[0], x.shape[1])
        for layer in self.layers:
            x, probs = layer.forward_with_attention(x, mask.expand(-1, -1, x.shape[1], -1))
            total = total + probs.mean(1).sum(1)
        return x, total
