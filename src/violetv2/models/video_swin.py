"""Video Swin Transformer (3-D shifted windows), as VIOLETv2 uses it.

Input ``[b, c, t, h, w]`` (note: channels before time, as in Video Swin), output ``[b, C, t', h/32, w/32]``.

Points where this follows the published VIOLETv2 forward rather than stock Video Swin:

- The 3-D patch embedding may use temporal stride 1 (``temporal_stride=1``) with its 2-frame kernel; the clip
  is then zero-padded by ``kernel_t - 1`` frames at the *end*, so ``T`` frames give ``T`` feature maps
  (token ``t`` sees frames ``t`` and ``t + 1``). With stride 2 it pads to a multiple of 2, as stock Video Swin.
- Windows are clipped to the feature map: along an axis whose size is at most the window, the window is the
  whole axis and there is no shift along it (so no temporal shift for ``T <= 8``).
- Shifted-window masks use -100 (not -inf); the relative position bias table is indexed for the effective
  (clipped) window with the strides of the full table.

Attention kernel (:func:`window_attention`): the relative position bias ``[h, n, n]`` and the shift mask
``[nw, n, n]`` are broadcast over the clips of the batch, never repeated per window. Where the bias needs a
gradient on CPU, PyTorch's SDPA has no fused kernel (it would run its math fallback), so an explicit
``softmax(q k^T * scale + bias) v`` runs; elsewhere (CUDA, or no gradient) SDPA runs, with the windows of a clip
folded into the head axis so that one ``[1, nw * h, n, n]`` bias serves every clip. Nothing is padded or copied
when the feature map is a multiple of the window (224 px, T <= 8).
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

__all__ = ["VideoSwin", "PatchEmbed3D", "window_attention", "window_sizes"]

Size3 = tuple[int, int, int]


def window_sizes(feature: Size3, window: Size3, shift: Size3) -> tuple[Size3, Size3]:
    """Clip window and shift to the feature map: an axis no larger than the window gets it whole, unshifted."""
    win = tuple(f if f <= w else w for f, w in zip(feature, window))
    sh = tuple(0 if f <= w else s for f, w, s in zip(feature, window, shift))
    return win, sh  # type: ignore[return-value]


@lru_cache(maxsize=64)
def relative_position_index(window: Size3, table_window: Size3) -> Tensor:
    """``[n, n]`` indices into a table built for ``table_window``, for the tokens of a ``window``-sized window.

    Tokens are flattened t-major (t, h, w). For an unclipped window this is the standard Swin index.
    """
    coords = torch.stack(torch.meshgrid(*[torch.arange(w) for w in window], indexing="ij")).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :]  # [3, n, n]
    rel = rel + torch.tensor(table_window)[:, None, None] - 1
    strides = [(2 * table_window[1] - 1) * (2 * table_window[2] - 1), 2 * table_window[2] - 1, 1]
    return sum(r * s for r, s in zip(rel, strides))


@lru_cache(maxsize=64)
def _cached_index(window: Size3, table_window: Size3, device: torch.device) -> Tensor:
    return relative_position_index(window, table_window).to(device)


@lru_cache(maxsize=64)
def _cached_shift_mask(padded: Size3, window: Size3, shift: Size3, device: torch.device) -> Tensor:
    return shift_mask(padded, window, shift).to(device)


@lru_cache(maxsize=64)
def shift_mask(padded: Size3, window: Size3, shift: Size3) -> Tensor:
    """``[num_windows, n, n]`` additive mask (0 / -100) separating regions that the cyclic shift joined."""
    region = torch.zeros(padded, dtype=torch.long)
    label = 0
    for sd in _regions(window[0], shift[0]):
        for sh in _regions(window[1], shift[1]):
            for sw in _regions(window[2], shift[2]):
                region[sd, sh, sw] = label
                label += 1
    windows = _partition(region[None, ..., None], window).squeeze(-1)  # [nw, n]
    diff = windows[:, None, :] != windows[:, :, None]
    return diff.float() * -100.0


def _regions(w: int, s: int) -> list[slice]:
    return [slice(0, -w), slice(-w, -s), slice(-s, None)] if s > 0 else [slice(None)]


def _partition(x: Tensor, window: Size3) -> Tensor:
    """``[b, d, h, w, c] -> [b * num_windows, n, c]``."""
    wd, wh, ww = window
    return rearrange(x, "b (d wd) (h wh) (w ww) c -> (b d h w) (wd wh ww) c", wd=wd, wh=wh, ww=ww)


def _reverse(windows: Tensor, window: Size3, b: int, padded: Size3) -> Tensor:
    """Inverse of :func:`_partition`."""
    wd, wh, ww = window
    d, h, w = (p // s for p, s in zip(padded, window))
    return rearrange(
        windows, "(b d h w) (wd wh ww) c -> b (d wd) (h wh) (w ww) c", b=b, d=d, h=h, w=w, wd=wd, wh=wh, ww=ww
    )


class DropPath(nn.Module):
    """Stochastic depth: drop the residual branch for whole samples with probability ``p`` in training."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class WindowAttention3D(nn.Module):
    """Multi-head self-attention inside 3-D windows with a learned relative position bias."""

    def __init__(self, dim: int, heads: int, window: Size3, qkv_bias: bool = True) -> None:
        super().__init__()
        self.heads, self.window = heads, window
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        n_rel = (2 * window[0] - 1) * (2 * window[1] - 1) * (2 * window[2] - 1)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(n_rel, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def bias(self, window: Size3) -> Tensor:
        """``[heads, n, n]`` relative position bias for an effective window."""
        idx = _cached_index(window, self.window, self.relative_position_bias_table.device)
        n = idx.shape[0]
        return self.relative_position_bias_table[idx.reshape(-1)].reshape(n, n, -1).permute(2, 0, 1)

    def forward(self, x: Tensor, window: Size3, mask: Tensor | None) -> Tensor:
        # x: [b*nw, n, c]; mask: [nw, n, n] (windows of one clip) or None
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.heads)
        bias = self.bias(window).to(q.dtype)[None]  # [1, h, n, n]
        if mask is not None:
            bias = bias + mask[:, None].to(q.dtype)  # [nw, h, n, n]: broadcast over the clips
        out = window_attention(q, k, v, bias)  # [b*nw, h, n, d]
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))


def window_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Tensor:
    """``softmax(q k^T / sqrt(d) + bias) v`` for the windows of a batch of clips.

    Args:
        q, k, v: ``[b * nw, h, n, d]``, windows grouped by clip (``nw`` windows per clip).
        bias: ``[nw, h, n, n]`` or ``[1, h, n, n]`` additive bias, the same for every clip.

    Returns:
        ``[b * nw, h, n, d]``.
    """
    bw, h, n, d = q.shape
    nw = bias.shape[0]
    if bw % nw:
        raise ValueError(f"{bw} windows are not a whole number of clips of {nw} windows")
    if q.device.type == "cpu" and bias.requires_grad and torch.is_grad_enabled():
        # SDPA would take its unfused math path here (the bias needs a gradient): do it directly, broadcast
        scores = (q * d**-0.5) @ k.transpose(-2, -1)  # [b*nw, h, n, n]
        scores = scores.view(bw // nw, nw, h, n, n).add_(bias)  # the bias is read, never repeated
        return scores.softmax(-1).view(bw, h, n, n) @ v
    if nw == 1:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    # fold the windows of a clip into the head axis: one [1, nw*h, n, n] bias serves every clip
    fold = "(b nw) h n d -> b (nw h) n d"
    q, k, v = (rearrange(t, fold, nw=nw) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.reshape(1, nw * h, n, n))
    return rearrange(out, "b (nw h) n d -> (b nw) h n d", nw=nw)


class SwinBlock3D(nn.Module):
    """Pre-norm block: (shifted) window attention + MLP, each with a residual and stochastic depth."""

    def __init__(
        self,
        dim: int,
        heads: int,
        window: Size3,
        shift: Size3,
        mlp_ratio: float,
        drop_path: float,
        eps: float,
    ) -> None:
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = WindowAttention3D(dim, heads, window)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = nn.Sequential()
        self.mlp.add_module("fc1", nn.Linear(dim, int(dim * mlp_ratio)))
        self.mlp.add_module("act", nn.GELU())
        self.mlp.add_module("fc2", nn.Linear(int(dim * mlp_ratio), dim))

    def forward(self, x: Tensor) -> Tensor:  # [b, d, h, w, c]
        x = x + self.drop_path(self._attend(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def _attend(self, x: Tensor) -> Tensor:
        b, d, h, w, c = x.shape
        window, shift = window_sizes((d, h, w), self.window, self.shift)
        pads = [(-s) % win for s, win in zip((d, h, w), window)]
        if any(pads):
            x = F.pad(x, (0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))
        padded = (d + pads[0], h + pads[1], w + pads[2])
        mask = None
        if any(shift):
            x = torch.roll(x, shifts=tuple(-s for s in shift), dims=(1, 2, 3))
            mask = _cached_shift_mask(padded, window, shift, x.device)
        out = _reverse(self.attn(_partition(x, window), window, mask), window, b, padded)
        if any(shift):
            out = torch.roll(out, shifts=shift, dims=(1, 2, 3))
        return out[:, :d, :h, :w].contiguous() if any(pads) else out


class PatchMerging(nn.Module):
    """2x2 spatial merge: concat 4 neighbours (h offset varies first), LayerNorm(4c), Linear(4c -> 2c)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim, eps=eps)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:  # [b, d, h, w, c] -> [b, d, h/2, w/2, 2c]
        if x.shape[2] % 2 or x.shape[3] % 2:
            x = F.pad(x, (0, 0, 0, x.shape[3] % 2, 0, x.shape[2] % 2))
        parts = [x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]]
        return self.reduction(self.norm(torch.cat(parts, dim=-1)))


class Stage(nn.Module):
    """``depth`` blocks alternating unshifted / shifted windows, then an optional patch merge."""

    def __init__(
        self,
        dim: int,
        depth: int,
        heads: int,
        window: Size3,
        mlp_ratio: float,
        drop_paths: list[float],
        downsample: bool,
        eps: float,
    ) -> None:
        super().__init__()
        shift = tuple(w // 2 for w in window)
        self.blocks = nn.ModuleList(
            SwinBlock3D(dim, heads, window, (0, 0, 0) if i % 2 == 0 else shift, mlp_ratio, drop_paths[i], eps)
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim, eps) if downsample else None
        self.gradient_checkpointing = False

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class PatchEmbed3D(nn.Module):
    """Conv3d patch embedding with end padding, then LayerNorm over channels.

    Args:
        patch: Kernel (t, h, w); the spatial stride equals the spatial kernel.
        temporal_stride: 1 (VIOLETv2: pad ``patch_t - 1`` frames at the end, T in -> T out) or the kernel size.
    """

    def __init__(self, dim: int, patch: Size3, temporal_stride: int, eps: float) -> None:
        super().__init__()
        self.patch, self.temporal_stride = patch, temporal_stride
        stride = (temporal_stride, patch[1], patch[2])
        self.proj = nn.Conv3d(3, dim, kernel_size=patch, stride=stride)
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: Tensor) -> Tensor:  # [b, 3, t, h, w] -> [b, t', h/4, w/4, dim]
        _, _, t, h, w = x.shape
        pt, ph, pw = self.patch
        pad_t = pt - 1 if self.temporal_stride == 1 else (-t) % pt
        x = F.pad(x, (0, (-w) % pw, 0, (-h) % ph, 0, pad_t))
        return self.norm(rearrange(self.proj(x), "b c t h w -> b t h w c"))


class VideoSwin(nn.Module):
    """Video Swin Transformer backbone.

    Args:
        embed_dim: Channels of the first stage (doubled by every patch merge).
        depths: Blocks per stage.
        heads: Attention heads per stage.
        window: Window (t, h, w).
        patch: Patch embedding kernel (t, h, w).
        temporal_stride: Temporal stride of the patch embedding (1 in VIOLETv2, 2 in stock Video Swin).
        mlp_ratio: MLP width / channels.
        drop_path: Maximum stochastic-depth rate, increasing linearly over all blocks.
        eps: LayerNorm epsilon.
    """

    def __init__(
        self,
        embed_dim: int = 128,
        depths: tuple[int, ...] = (2, 2, 18, 2),
        heads: tuple[int, ...] = (4, 8, 16, 32),
        window: Size3 = (8, 7, 7),
        patch: Size3 = (2, 4, 4),
        temporal_stride: int = 1,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.2,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed3D(embed_dim, patch, temporal_stride, eps)
        total = sum(depths)
        rates = [drop_path * i / max(total - 1, 1) for i in range(total)]
        self.layers = nn.ModuleList()
        for i, (depth, h) in enumerate(zip(depths, heads)):
            start = sum(depths[:i])
            self.layers.append(
                Stage(
                    embed_dim * 2**i,
                    depth,
                    h,
                    window,
                    mlp_ratio,
                    rates[start : start + depth],
                    downsample=i < len(depths) - 1,
                    eps=eps,
                )
            )
        self.out_dim = embed_dim * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(self.out_dim, eps=eps)

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Recompute each block's activations in backward (saves memory, costs a forward)."""
        for stage in self.layers:
            stage.gradient_checkpointing = enabled

    def forward(self, x: Tensor) -> Tensor:  # [b, c, t, h, w] -> [b, C, t', h', w']
        x = self.patch_embed(x)
        for stage in self.layers:
            x = stage(x)
        return rearrange(self.norm(x), "b t h w c -> b c t h w")
