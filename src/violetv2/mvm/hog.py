"""Histograms of oriented gradients on the accelerator (batched torch / Kornia), for the HOG MVM target.

Two settings, one code path:

- MaskFeat (the default target): Sobel gradients per RGB channel (``kornia.filters.spatial_gradient``),
  unsigned orientations in 9 bins, 8x8-pixel cells, each (channel, cell) histogram L2-normalised:
  :func:`maskfeat_hog` -> ``[n, 3 * 9, h / 8, w / 8]``.
- scikit-image compatible (the published release regresses ``skimage.feature.hog``'s visualisation image):
  central differences ``I[x+1] - I[x-1]`` with zero borders, unsigned 0-180 degrees, hard binning
  (a pixel votes its full magnitude into bin ``floor(angle / 20)``; scikit-image does not split votes),
  histograms averaged over the cell (``sum / 64``), block 1x1 L2 normalisation ``v / sqrt(|v|^2 + 1e-10)``:
  :func:`skimage_hog` matches ``hog(img, 9, (8, 8), (1, 1), "L2", feature_vector=False)``, and
  :func:`hog_visualisation` matches its ``visualize=True`` image (same Bresenham line stencils).

Every public function runs in full precision whatever the caller's autocast: half / bfloat16 inputs are
computed in float32 with autocast disabled (in bfloat16 the flat bin index of a 224-px frame is not
representable and the Sobel filter's rounding moves votes between bins), float32 / float64 stay as given.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from functools import lru_cache
from typing import Literal, TypeVar

import kornia
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

__all__ = [
    "GRAY_WEIGHTS",
    "to_gray",
    "image_gradients",
    "gradient_magnitude",
    "orientation_histograms",
    "normalize_cells",
    "maskfeat_hog",
    "skimage_hog",
    "hog_visualisation",
    "line_stencils",
]

# scikit-image's rgb2gray weights (ITU-R 709 luma).
GRAY_WEIGHTS = (0.2125, 0.7154, 0.0721)

_F = TypeVar("_F", bound=Callable[..., Tensor | tuple[Tensor, Tensor]])
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _full_precision(fn: _F) -> _F:
    """Run ``fn`` with autocast off on its first tensor's device, half / bfloat16 tensors cast to float32."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        def full(x: object) -> object:
            return x.float() if isinstance(x, Tensor) and x.dtype in _LOW_PRECISION else x

        tensors = [x for x in (*args, *kwargs.values()) if isinstance(x, Tensor)]
        device_type = tensors[0].device.type if tensors else "cpu"
        args, kwargs = tuple(full(a) for a in args), {k: full(v) for k, v in kwargs.items()}
        if not torch.amp.is_autocast_available(device_type):
            return fn(*args, **kwargs)
        with torch.autocast(device_type, enabled=False):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@_full_precision
def to_gray(images: Tensor) -> Tensor:
    """``[n, 3, h, w]`` RGB -> ``[n, 1, h, w]`` luma with scikit-image's ``rgb2gray`` weights."""
    if images.shape[1] != 3:
        raise ValueError(f"to_gray expects [n, 3, h, w] RGB, got shape {tuple(images.shape)}")
    w = images.new_tensor(GRAY_WEIGHTS).view(1, 3, 1, 1)
    return (images * w).sum(1, keepdim=True)


@_full_precision
def image_gradients(images: Tensor, kind: Literal["central", "sobel"] = "central") -> tuple[Tensor, Tensor]:
    """Row and column gradients of ``[n, c, h, w]`` images, each ``[n, c, h, w]``.

    Args:
        images: Float images.
        kind: ``"central"``: ``I[y+1] - I[y-1]`` with zero first/last rows/columns, as scikit-image's HOG;
            ``"sobel"``: Kornia's normalised Sobel filter (replicate padding).
    """
    if kind == "sobel":
        grad = kornia.filters.spatial_gradient(images, mode="sobel", normalized=True)  # [n, c, 2(x, y), h, w]
        return grad[:, :, 1], grad[:, :, 0]
    if kind != "central":
        raise ValueError(f"unknown gradient kind {kind!r}; use 'central' or 'sobel'")
    images = images.contiguous()  # channels-last strides would change argmax tie-breaking downstream
    g_row, g_col = torch.empty_like(images), torch.empty_like(images)
    torch.sub(images[:, :, 2:], images[:, :, :-2], out=g_row[:, :, 1:-1])
    torch.sub(images[..., 2:], images[..., :-2], out=g_col[..., 1:-1])
    g_row[:, :, 0], g_row[:, :, -1], g_col[..., 0], g_col[..., -1] = 0, 0, 0, 0
    return g_row, g_col


def gradient_magnitude(g_row: Tensor, g_col: Tensor) -> Tensor:
    """``sqrt(g_row^2 + g_col^2)`` (vectorises better than ``torch.hypot``; same value up to rounding)."""
    return torch.mul(g_row, g_row).addcmul_(g_col, g_col).sqrt_()


@_full_precision
def orientation_histograms(
    g_row: Tensor, g_col: Tensor, orientations: int = 9, cell: int = 8, signed: bool = False
) -> Tensor:
    """Per-cell histograms of gradient orientation weighted by magnitude, averaged over the cell's pixels.

    Every pixel votes its full magnitude into the bin ``floor(angle / bin_width)`` (scikit-image's rule);
    trailing rows/columns that do not fill a cell are ignored.

    Args:
        g_row: ``[n, c, h, w]`` gradient along rows (y).
        g_col: ``[n, c, h, w]`` gradient along columns (x).
        orientations: Number of bins over 180 degrees (360 when ``signed``).
        cell: Cell side in pixels.
        signed: Keep the gradient sign (0-360 degrees) instead of folding to 0-180.

    Returns:
        ``[n, c, orientations, h // cell, w // cell]``.
    """
    n, c, h, w = g_row.shape
    gh, gw = h // cell, w // cell
    g_row, g_col = g_row[..., : gh * cell, : gw * cell], g_col[..., : gh * cell, : gw * cell]
    magnitude = gradient_magnitude(g_row, g_col)
    # bin = floor(angle / bin width) mod orientations, computed as floor(radians * scale + orientations) mod
    # orientations (scikit-image's bins except within float rounding of a bin edge); the flat index
    # (cell * orientations + bin) is formed in int64, exact at any frame size and input dtype
    scale = orientations / math.radians(360.0 if signed else 180.0)
    bins = torch.atan2(g_row, g_col).mul_(scale).add_(orientations).floor_().long().remainder_(orientations)
    index = bins.add_(_cell_offsets(gh, gw, cell, orientations, g_row.device))
    hist = magnitude.new_zeros(n * c, gh * gw * orientations)
    hist.scatter_add_(1, index.reshape(n * c, -1), magnitude.reshape(n * c, -1)).div_(cell * cell)
    return rearrange(hist, "(n c) (h w o) -> n c o h w", c=c, h=gh, o=orientations)


@lru_cache(maxsize=16)
def _cell_offsets(gh: int, gw: int, cell: int, orientations: int, device: torch.device) -> Tensor:
    """Long ``[gh * cell, gw * cell]``: ``(cell_row * gw + cell_col) * orientations`` for every pixel."""
    rows = torch.arange(gh, device=device).repeat_interleave(cell)
    cols = torch.arange(gw, device=device).repeat_interleave(cell)
    return (rows[:, None] * gw + cols[None]) * orientations


def normalize_cells(hist: Tensor, eps: float = 1e-5) -> Tensor:
    """L2-normalise every cell histogram (dim 2 of ``[n, c, o, h, w]``): ``v / sqrt(|v|^2 + eps^2)``."""
    return hist / torch.sqrt(hist.pow(2).sum(2, keepdim=True) + eps * eps)


@_full_precision
def maskfeat_hog(images: Tensor, orientations: int = 9, cell: int = 8) -> Tensor:
    """MaskFeat-style HOG: per-channel Sobel histograms, L2-normalised per (channel, cell).

    Args:
        images: ``[n, c, h, w]`` (RGB in ``[0, 1]`` for the MVM target).
        orientations: Bins over 0-180 degrees.
        cell: Cell side in pixels.

    Returns:
        ``[n, c * orientations, h // cell, w // cell]``, channel-major (``c0o0 .. c0o8, c1o0 ..``).
    """
    hist = orientation_histograms(*image_gradients(images, "sobel"), orientations, cell)
    return rearrange(normalize_cells(hist), "n c o h w -> n (c o) h w")


def _reduce_channels(g_row: Tensor, g_col: Tensor) -> tuple[Tensor, Tensor]:
    """Per pixel, the gradient of the channel with the largest magnitude (scikit-image ``channel_axis``).

    Exact ties go to the first channel, as ``np.argmax``; magnitudes equal only up to rounding (different
    gradients of the same length) are decided by the last bit of ``hypot``, which may differ from numpy's.
    """
    idx = torch.hypot(g_row, g_col).argmax(1, keepdim=True)  # hypot like numpy: same tie-breaking, mostly
    return g_row.gather(1, idx), g_col.gather(1, idx)


def _skimage_histograms(images: Tensor, orientations: int, cell: int) -> Tensor:
    g_row, g_col = image_gradients(images, "central")
    if images.shape[1] > 1:
        g_row, g_col = _reduce_channels(g_row, g_col)
    return orientation_histograms(g_row, g_col, orientations, cell)[:, 0]  # [n, o, h/cell, w/cell]


@_full_precision
def skimage_hog(images: Tensor, orientations: int = 9, cell: int = 8, eps: float = 1e-5) -> Tensor:
    """scikit-image HOG with ``cells_per_block=(1, 1)``, ``block_norm="L2"``, batched.

    Args:
        images: ``[n, 1, h, w]`` grayscale, or ``[n, c, h, w]`` with the per-pixel dominant channel used as
            scikit-image does with ``channel_axis``.
        orientations: Bins over 0-180 degrees.
        cell: Cell side in pixels.
        eps: Normalisation epsilon (scikit-image: 1e-5).

    Returns:
        ``[n, h // cell, w // cell, orientations]`` = ``hog(..., feature_vector=False)[:, :, 0, 0]`` per image.
    """
    hist = _skimage_histograms(images, orientations, cell)
    return rearrange(normalize_cells(hist.unsqueeze(1), eps)[:, 0], "n o h w -> n h w o")


def _line(r0: int, c0: int, r1: int, c1: int) -> list[tuple[int, int]]:
    """Bresenham line from (r0, c0) to (r1, c1), both ends included (scikit-image ``draw.line``)."""
    steep = abs(r1 - r0) > abs(c1 - c0)
    if steep:
        r0, c0, r1, c1 = c0, r0, c1, r1
    dr, dc = abs(r1 - r0), abs(c1 - c0)
    sr, sc = (1 if r1 > r0 else -1), (1 if c1 > c0 else -1)
    r, c, d, out = r0, c0, 2 * dr - dc, []
    for _ in range(dc):
        out.append((c, r) if steep else (r, c))
        while d >= 0:
            r, d = r + sr, d - 2 * dc
        c, d = c + sc, d + 2 * dr
    out.append((c1, r1) if steep else (r1, c1))
    return out


@lru_cache(maxsize=8)
def line_stencils(orientations: int = 9, cell: int = 8) -> Tensor:
    """``[orientations, cell, cell]`` 0/1 masks: the line scikit-image draws for each bin of one cell."""
    radius = cell // 2 - 1
    stencils = torch.zeros(orientations, cell, cell, dtype=torch.float64)
    centre = cell // 2
    for o in range(orientations):
        mid = math.pi * (o + 0.5) / orientations
        dr, dc = radius * math.sin(mid), radius * math.cos(mid)
        for r, c in _line(int(centre - dc), int(centre + dr), int(centre + dc), int(centre - dr)):
            stencils[o, r, c] = 1.0
    return stencils


@_full_precision
def hog_visualisation(images: Tensor, orientations: int = 9, cell: int = 8) -> Tensor:
    """scikit-image's HOG visualisation image (``visualize=True``), batched: ``[n, c, h, w] -> [n, 1, h, w]``.

    Each cell draws, for every orientation bin, a line through its centre perpendicular to the bin's mid
    angle with intensity equal to the (un-normalised, cell-averaged) histogram value. Pixels beyond the last
    full cell stay 0, as in scikit-image.
    """
    hist = _skimage_histograms(images, orientations, cell)  # [n, o, gh, gw]
    weight = line_stencils(orientations, cell).to(hist).unsqueeze(1)  # [o, 1, cell, cell]
    vis = F.conv_transpose2d(hist, weight, stride=cell)
    h, w = images.shape[-2:]
    return F.pad(vis, (0, w - vis.shape[-1], 0, h - vis.shape[-2]))
