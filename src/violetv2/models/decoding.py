"""Incremental seq2seq fusion for caption decoding.

Under the seq2seq mask the always-visible prefix (video tokens, plus the task token when there is one) attends
to the prefix only, so its hidden states -- and the keys / values every layer derives from them -- do not
depend on the text. :func:`prefix_cache` runs the prefix through the fusion transformer once; every decoding
step then runs only the text rows (:func:`fuse_text`), attending to the cached prefix keys / values and causally
to the text. The result equals a full seq2seq forward up to float rounding (tested), at a fraction of the cost.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .fusion import FusionTransformer

__all__ = ["PrefixCache", "fuse_text", "prefix_cache"]

PrefixCache = list[tuple[Tensor, Tensor]]
"""Per fusion layer ``(keys, values)`` of the prefix, each ``[b, heads, n_prefix, d_head]``."""


def prefix_cache(fusion: FusionTransformer, prefix: Tensor) -> PrefixCache:
    """Keys / values of every layer for a ``[b, n, d]`` prefix that only attends to itself (no padding)."""
    cache = []
    x = prefix
    for layer in fusion.layers:
        q, k, v = layer._qkv(x)
        cache.append((k, v))
        x = layer._finish(x, F.scaled_dot_product_attention(q, k, v))
    return cache


def fuse_text(fusion: FusionTransformer, cache: PrefixCache, text: Tensor) -> Tensor:
    """``[b, l, d]`` fused text rows: each sees the whole cached prefix and the text causally (diagonal
    included), as the text rows of :func:`~violetv2.models.fusion.seq2seq_mask` do."""
    length, n_prefix = text.shape[1], cache[0][0].shape[2]
    causal = torch.ones(length, length, dtype=torch.bool, device=text.device).tril()
    visible = torch.ones(length, n_prefix, dtype=torch.bool, device=text.device)
    mask = torch.cat([visible, causal], dim=1)  # [l, n_prefix + l]
    x = text
    for layer, (pk, pv) in zip(fusion.layers, cache):
        q, k, v = layer._qkv(x)
        ctx = F.scaled_dot_product_attention(q, torch.cat([pk, k], 2), torch.cat([pv, v], 2), attn_mask=mask)
        x = layer._finish(x, ctx)
    return x
