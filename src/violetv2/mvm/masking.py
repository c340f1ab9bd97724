"""Masked visual modelling: which 32x32-pixel patches to hide, and hiding them.

A mask is a bool tensor ``[b, t, gh, gw]`` over the patch grid (``gh = gw = image_size // 32``: 7 at 224 px,
2 for the ``tiny`` preset), True where a patch is masked. Strategies (one drawn per sample by
:class:`MaskSampler`):

- ``random``: a uniformly random set of patches.
- ``blockwise``: a union of random 3-D blocks (t-extent in ``[1, T-1]``, h/w-extents in
  ``[1, floor(2*g/3) - 1]``, clamped to at least 1), as the published VIOLETv2 draws them.
- ``attended``: patches sampled without replacement in proportion to the attention they receive in the
  fusion transformer (VIOLET v1); the caller supplies the weights.
- ``tube``: one random spatial mask repeated on every frame.
- ``frame``: whole frames.

Every strategy honours the configured ratio (the published code ignored its ratio option): a sample gets
exactly :func:`mask_count` masked patches, ``round(ratio * n)`` clamped to ``[1, n - 1]`` so that at
least one patch is masked and at least one stays visible (``tube`` and ``frame`` count in spatial
positions and frames respectively, see their docstrings).

:func:`apply_mask` hides the patches: zeroed in the ImageNet-normalised clip, as published (so they become the
mean colour), or overwritten with a learned mask token.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from einops import rearrange, repeat
from torch import Tensor

from violetv2.rng import Generators, subset, uniform

__all__ = [
    "STRATEGIES",
    "MaskSampler",
    "apply_mask",
    "attended_mask",
    "blockwise_mask",
    "expected_ratio",
    "frame_mask",
    "mask_count",
    "pixel_mask",
    "random_mask",
    "tube_mask",
]

STRATEGIES = ("random", "blockwise", "attended", "tube", "frame")


def mask_count(ratio: float, n: int) -> int:
    """Patches to mask out of ``n``: ``round(ratio * n)`` clamped to ``[1, n - 1]``.

    Raises:
        ValueError: if ``ratio`` is not in (0, 1) or ``n < 2`` (no way to mask one patch and keep one).
    """
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"mask ratio must be in (0, 1), got {ratio}")
    if n < 2:
        raise ValueError(f"cannot mask {n} patch(es) while keeping at least one masked and one visible")
    return min(max(round(ratio * n), 1), n - 1)


def _uniform(shape: tuple[int, ...], generator: Generators, device: torch.device | None) -> Tensor:
    """U[0, 1) float64 noise drawn on the generator's device (or one row per generator of a list, see
    :func:`violetv2.rng.uniform`), returned on ``device``."""
    return uniform(shape, generator, device, torch.float64)


def _top_k(keys: Tensor, k: int) -> Tensor:
    """Bool ``[b, n]`` mask of the ``k`` largest keys of every row."""
    idx = keys.topk(k, dim=1).indices
    return torch.zeros_like(keys, dtype=torch.bool).scatter_(1, idx, True)


def random_mask(
    b: int,
    t: int,
    gh: int,
    gw: int,
    ratio: float,
    *,
    generator: Generators = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Exactly ``mask_count(ratio, t*gh*gw)`` uniformly random patches per sample.

    The published code flips a coin per patch (Bernoulli(ratio)); an exact count has the same expected
    ratio, no variance, and never masks nothing or everything.
    """
    k = mask_count(ratio, t * gh * gw)
    keys = _uniform((b, t * gh * gw), generator, device)
    return rearrange(_top_k(keys, k), "b (t gh gw) -> b t gh gw", t=t, gh=gh)


def tube_mask(
    b: int,
    t: int,
    gh: int,
    gw: int,
    ratio: float,
    *,
    generator: Generators = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """The same ``mask_count(ratio, gh*gw)`` random spatial positions masked on every frame."""
    k = mask_count(ratio, gh * gw)
    spatial = _top_k(_uniform((b, gh * gw), generator, device), k)
    return repeat(spatial, "b (gh gw) -> b t gh gw", t=t, gh=gh)


def frame_mask(
    b: int,
    t: int,
    gh: int,
    gw: int,
    ratio: float,
    *,
    generator: Generators = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """``mask_count(ratio, t)`` whole frames per sample (so at least one frame stays visible).

    With ``t == 1`` (images) no whole frame can be hidden while keeping a patch visible, so the mask is
    :func:`random_mask` instead.
    """
    if t == 1:
        return random_mask(b, t, gh, gw, ratio, generator=generator, device=device)
    frames = _top_k(_uniform((b, t), generator, device), mask_count(ratio, t))
    return repeat(frames, "b t -> b t gh gw", gh=gh, gw=gw)


def _block_limits(t: int, gh: int, gw: int) -> tuple[int, int, int]:
    """Largest block extent along t, h, w: ``T-1`` (1 if T == 1) and ``floor(2*g/3) - 1``, at least 1."""
    return max(t - 1, 1), max(2 * gh // 3 - 1, 1), max(2 * gw // 3 - 1, 1)


def _draw_block(
    grid: tuple[int, int, int], limits: tuple[int, int, int], generator: torch.Generator | None
) -> tuple[slice, slice, slice]:
    """One random block (extent in ``[1, limit]`` per axis) placed entirely inside ``grid``."""
    u = _uniform((6,), generator, None).tolist()
    extents = [1 + int(u[i] * lim) for i, lim in enumerate(limits)]
    starts = [int(u[3 + i] * (g - e + 1)) for i, (g, e) in enumerate(zip(grid, extents))]
    return tuple(slice(s, s + e) for s, e in zip(starts, extents))  # type: ignore[return-value]


def _trim(mask: Tensor, added: Tensor, excess: int, generator: torch.Generator | None) -> None:
    """Unmask ``excess`` random cells among ``added`` (the last block's new cells), in place."""
    cells = added.flatten().nonzero().squeeze(1)
    drop = cells[_uniform((len(cells),), generator, cells.device).argsort()[:excess]]
    mask.view(-1)[drop] = False


def _blockwise_one(t: int, gh: int, gw: int, k: int, generator: torch.Generator | None) -> Tensor:
    """A ``[t, gh, gw]`` union of blocks with exactly ``k`` cells (the last block trimmed to fit)."""
    grid, limits = (t, gh, gw), _block_limits(t, gh, gw)
    mask = torch.zeros(grid, dtype=torch.bool)
    for _ in range(100 * t * gh * gw):  # generous bound: each try covers a new cell with prob >= 1/n
        block = torch.zeros_like(mask)
        block[_draw_block(grid, limits, generator)] = True
        added = block & ~mask
        mask |= block
        count = int(mask.sum())
        if count >= k:
            _trim(mask, added, count - k, generator)
            return mask
    raise RuntimeError(f"blockwise masking did not reach {k} cells on a {grid} grid")  # pragma: no cover


def blockwise_mask(
    b: int,
    t: int,
    gh: int,
    gw: int,
    ratio: float,
    *,
    generator: Generators = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Random 3-D blocks added until ``mask_count(ratio, t*gh*gw)`` patches are covered.

    Block extents follow the published recipe: t in ``[1, T-1]`` (1 when ``T == 1``), h and w in
    ``[1, floor(2*g/3) - 1]`` clamped to at least 1 (so 1x1 blocks on the ``tiny`` 2x2 grid); every block
    lies inside the grid. The published code adds exactly T blocks whatever the ratio; here blocks are added
    until the target is reached and the new cells of the last block are randomly trimmed to hit it exactly.
    """
    k = mask_count(ratio, t * gh * gw)
    per_row = generator if isinstance(generator, Sequence) else [generator] * b
    if len(per_row) != b:
        raise ValueError(f"{len(per_row)} per-row generators for a batch of {b}")
    masks = [_blockwise_one(t, gh, gw, k, g) for g in per_row]
    return (
        torch.stack(masks).to(device) if masks else torch.zeros(0, t, gh, gw, dtype=torch.bool, device=device)
    )


def _check_attention(attention: Tensor, t: int, gh: int, gw: int) -> Tensor:
    """``[b, t, gh*gw]`` (or ``[b, t, gh, gw]``) finite non-negative weights as ``[b, t*gh*gw]``."""
    if attention.dim() == 4:
        attention = rearrange(attention, "b t gh gw -> b t (gh gw)")
    if attention.dim() != 3 or attention.shape[1:] != (t, gh * gw):
        raise ValueError(
            f"attention must be [b, {t}, {gh * gw}] for a {t}x{gh}x{gw} grid, got {tuple(attention.shape)}"
        )
    if not torch.isfinite(attention).all() or (attention < 0).any():
        raise ValueError("attention weights must be finite and non-negative")
    return rearrange(attention, "b t n -> b (t n)")


def attended_mask(
    attention: Tensor,
    gh: int,
    gw: int,
    ratio: float,
    *,
    generator: Generators = None,
) -> Tensor:
    """``mask_count(ratio, t*gh*gw)`` patches sampled without replacement in proportion to ``attention``.

    Sampling uses the Gumbel-top-k trick (``log w + Gumbel noise``, keep the k largest), which is exactly
    sequential sampling without replacement with probabilities proportional to the weights. Patches with zero
    weight are only taken once every positive-weight patch is masked (then uniformly among them).

    Args:
        attention: ``[b, t, gh*gw]`` non-negative weights, e.g. the attention mass each video patch token
            receives in the fusion transformer (the model computes it).
        gh: Patch grid height.
        gw: Patch grid width.
        ratio: Fraction of patches to mask.
        generator: Random generator (for reproducible masks).

    Returns:
        Bool ``[b, t, gh, gw]`` on ``attention.device``.
    """
    t = attention.shape[1]
    weights = _check_attention(attention, t, gh, gw).double()
    k = mask_count(ratio, weights.shape[1])
    u = _uniform(tuple(weights.shape), generator, weights.device).clamp(1e-300, 1.0 - 1e-16)
    gumbel = -torch.log(-torch.log(u))
    keys = torch.where(weights > 0, weights.log() + gumbel, gumbel - 1e6)
    return rearrange(_top_k(keys, k), "b (t gh gw) -> b t gh gw", t=t, gh=gh)


_GridMask = Callable[..., Tensor]
_GRID_STRATEGIES: dict[str, _GridMask] = {
    "random": random_mask,
    "blockwise": blockwise_mask,
    "tube": tube_mask,
    "frame": frame_mask,
}


class MaskSampler:
    """Draws one masking strategy per sample from a configured set and builds the batch mask.

    Args:
        strategies: Strategy names, drawn uniformly per sample: any of ``random``, ``blockwise``,
            ``attended``, ``tube``, ``frame``. The best VIOLETv2 recipe is ``random`` + ``blockwise``.
        ratio: Fraction of patches masked per sample, in (0, 1); the published range is 0.15-0.3.

    >>> sampler = MaskSampler(["random", "blockwise"], ratio=0.15)
    >>> sampler(2, 4, 7, 7, generator=torch.Generator().manual_seed(0)).sum(dim=(1, 2, 3)).tolist()
    [29, 29]
    """

    def __init__(self, strategies: Sequence[str] = ("random", "blockwise"), ratio: float = 0.15) -> None:
        strategies = [strategies] if isinstance(strategies, str) else list(strategies)
        if not strategies:
            raise ValueError("MaskSampler needs at least one strategy")
        unknown = [s for s in strategies if s not in STRATEGIES]
        if unknown:
            raise ValueError(f"unknown masking strategy {unknown}; known: {', '.join(STRATEGIES)}")
        if not 0.0 < ratio < 1.0:
            raise ValueError(f"mask ratio must be in (0, 1), got {ratio}")
        self.strategies, self.ratio = strategies, float(ratio)

    def __repr__(self) -> str:
        return f"MaskSampler(strategies={self.strategies}, ratio={self.ratio})"

    def __call__(
        self,
        b: int,
        t: int,
        gh: int,
        gw: int,
        *,
        attention: Tensor | None = None,
        generator: Generators = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Bool ``[b, t, gh, gw]`` mask, True = masked; see :meth:`sample` for the arguments."""
        return self.sample(b, t, gh, gw, attention=attention, generator=generator, device=device)[0]

    def sample(
        self,
        b: int,
        t: int,
        gh: int,
        gw: int,
        *,
        attention: Tensor | None = None,
        generator: Generators = None,
        device: torch.device | str | None = None,
    ) -> tuple[Tensor, Tensor]:
        """The mask and, per sample, the index into ``strategies`` that built it (for logging).

        Args:
            b: Batch size.
            t: Frames per clip (1 for images).
            gh: Patch grid height (``image_size // 32``).
            gw: Patch grid width.
            attention: ``[b, t, gh*gw]`` non-negative weights; required when ``attended`` is configured.
            generator: Random generator; the same seed gives the same masks. A list of ``b`` generators draws
                each sample (its strategy, then its mask) from its own generator only.
            device: Device of the returned tensors (default: the attention's, else CPU).
        """
        if "attended" in self.strategies and attention is None:
            raise ValueError(
                "masking strategy 'attended' needs attention=[b, t, gh*gw] weights (attention mass per video "
                "patch token from the fusion transformer); pass them or drop 'attended' from the strategies"
            )
        if device is None and attention is not None:
            device = attention.device
        # drawn on the host (or the generator's device): splitting the batch by strategy then needs no
        # device-to-host sync in a training step
        choice = (
            (_uniform((b,), generator, None) * len(self.strategies))
            .long()
            .clamp_max(len(self.strategies) - 1)
        )
        mask = torch.zeros(b, t, gh, gw, dtype=torch.bool, device=device)
        for i, name in enumerate(self.strategies):
            idx = (choice == i).nonzero().squeeze(1)
            if len(idx) == 0:
                continue
            if name == "attended":
                part = attended_mask(
                    attention[idx.to(attention.device)], gh, gw, self.ratio, generator=subset(generator, idx)
                )
            else:
                part = _GRID_STRATEGIES[name](
                    len(idx), t, gh, gw, self.ratio, generator=subset(generator, idx), device=device
                )
            mask[idx] = part.to(mask.device)
        return mask, choice


def pixel_mask(mask: Tensor, patch: int = 32) -> Tensor:
    """Patch mask ``[b, t, gh, gw]`` -> pixel mask ``[b, t, 1, gh*patch, gw*patch]`` (broadcasts over c)."""
    return repeat(mask, "b t gh gw -> b t 1 (gh p1) (gw p2)", p1=patch, p2=patch)


def apply_mask(video: Tensor, mask: Tensor, patch: int = 32, mask_token: Tensor | None = None) -> Tensor:
    """Hide the masked patches of a normalised clip (a new tensor; ``video`` is left untouched).

    Args:
        video: ``[b, t, c, h, w]`` ImageNet-normalised clip (``t = 1`` for images).
        mask: Bool ``[b, t, h // patch, w // patch]``, True = masked.
        patch: Side of a masked patch in pixels (32: the Video Swin total stride).
        mask_token: ``None`` to zero masked pixels as published (the mean colour after normalisation), or a
            learned ``[c]`` / ``[c, patch, patch]`` tensor written into every masked patch (gradients flow to
            it; the module that owns it keeps it as an ``nn.Parameter``).

    Returns:
        ``[b, t, c, h, w]`` with masked patches replaced.
    """
    _check_video_mask(video, mask, patch)
    where = pixel_mask(mask.to(torch.bool), patch)
    if mask_token is None:
        return video.masked_fill(where, 0.0)
    c, gh, gw = video.shape[2], mask.shape[2], mask.shape[3]
    if mask_token.shape == (c,):
        mask_token = repeat(mask_token, "c -> c p1 p2", p1=patch, p2=patch)
    if mask_token.shape != (c, patch, patch):
        raise ValueError(
            f"mask_token must be [{c}] or [{c}, {patch}, {patch}], got {tuple(mask_token.shape)}"
        )
    fill = repeat(mask_token.to(video.dtype), "c p1 p2 -> c (gh p1) (gw p2)", gh=gh, gw=gw)
    return torch.where(where, fill, video)


def _check_video_mask(video: Tensor, mask: Tensor, patch: int) -> None:
    if video.dim() != 5:
        raise ValueError(f"video must be [b, t, c, h, w], got shape {tuple(video.shape)}")
    b, t, _, h, w = video.shape
    expected = (b, t, h // patch, w // patch)
    if h % patch or w % patch:
        raise ValueError(f"frame size {h}x{w} is not a multiple of the {patch}-pixel mask patch")
    if tuple(mask.shape) != expected:
        raise ValueError(
            f"mask must be {list(expected)} for a video of shape {tuple(video.shape)}, got {tuple(mask.shape)}"
        )


def expected_ratio(ratio: float, t: int, gh: int, gw: int, strategy: str = "random") -> float:
    """The fraction of patches a strategy actually masks at this grid (the count is rounded and clamped)."""
    if strategy == "tube":
        return mask_count(ratio, gh * gw) / (gh * gw)
    if strategy == "frame" and t > 1:
        return mask_count(ratio, t) / t
    return mask_count(ratio, t * gh * gw) / (t * gh * gw)
