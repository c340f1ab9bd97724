"""Clip transforms: resize, crop / pad, ImageNet normalisation.

Two paths do the same per-pixel work:

- **CPU, plain torch** (:class:`TrainTransform`, :class:`EvalTransform`, :class:`PadSquareTransform`): called
  per sample in the DataLoader workers by :class:`~violetv2.data.dataset.VideoTextDataset`. Input uint8
  ``[t, c, h, w]`` (already resized on decode when the dataset asks :func:`~violetv2.data.video.read_clip` for
  :attr:`decode_side`), output float ``[t, c, h, w]`` normalised, or uint8 when ``normalize=False``.
- **GPU, Kornia** (:class:`GpuNormalize`): the batched variant for the device. Use it with
  ``normalize=False`` on the CPU side: the workers then only crop (cheap, on uint8, 4x less to transfer) and
  the float conversion, optional resize and normalisation run on the whole ``[b, t, c, h, w]`` batch on the
  accelerator (e.g. in a LightningModule's ``on_after_batch_transfer``).

Every frame of a clip gets the same crop, so motion is not distorted.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "TRANSFORMS",
    "EvalTransform",
    "FrameRandomCropTransform",
    "GpuNormalize",
    "PadSquareTransform",
    "TrainTransform",
    "build_transform",
    "center_crop",
    "normalize",
    "pad_to_square",
    "random_crop",
    "resize",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize(clip: Tensor, size: int, side: str = "shorter") -> Tensor:
    """Resize ``[t, c, h, w]`` so its ``side`` (``"shorter"`` / ``"longer"``) side is ``size`` pixels.

    A no-op when it already is (the usual case after resize-on-decode). uint8 stays uint8.
    """
    h, w = clip.shape[-2:]
    scale = size / (min(h, w) if side == "shorter" else max(h, w))
    out_hw = (max(1, round(h * scale)), max(1, round(w * scale)))
    if out_hw == (h, w):
        return clip
    resized = F.interpolate(clip.float(), size=out_hw, mode="bilinear", align_corners=False, antialias=True)
    return resized.round().clamp(0, 255).to(torch.uint8) if clip.dtype == torch.uint8 else resized


def _pad_to_min(clip: Tensor, size: int) -> Tensor:
    h, w = clip.shape[-2:]
    if h >= size and w >= size:
        return clip
    ph, pw = max(size - h, 0), max(size - w, 0)
    return F.pad(clip, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


def random_crop(clip: Tensor, size: int, generator: torch.Generator | None = None) -> Tensor:
    """The same random ``size x size`` window of every frame of ``[t, c, h, w]`` (zero-padded if smaller)."""
    clip = _pad_to_min(clip, size)
    h, w = clip.shape[-2:]
    top = int(torch.randint(h - size + 1, (1,), generator=generator))
    left = int(torch.randint(w - size + 1, (1,), generator=generator))
    return clip[..., top : top + size, left : left + size]


def center_crop(clip: Tensor, size: int) -> Tensor:
    """The central ``size x size`` window of every frame of ``[t, c, h, w]`` (zero-padded if smaller)."""
    clip = _pad_to_min(clip, size)
    h, w = clip.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return clip[..., top : top + size, left : left + size]


def pad_to_square(clip: Tensor, fill: float = 0) -> Tensor:
    """Pad ``[t, c, h, w]`` symmetrically with ``fill`` to a square of its longer side."""
    h, w = clip.shape[-2:]
    side = max(h, w)
    ph, pw = side - h, side - w
    return F.pad(clip, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=fill)


def normalize(clip: Tensor) -> Tensor:
    """uint8 (0..255) or float (0..1) ``[..., c, h, w]`` -> float32 ImageNet-normalised."""
    x = clip.float() / 255.0 if clip.dtype == torch.uint8 else clip.float()
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(3, 1, 1)
    return (x - mean) / std


class _ClipTransform:
    """Shared plumbing: output dtype and the resize the decoder should already apply."""

    decode_side = "shorter"

    def __init__(self, size: int, normalize: bool = True) -> None:
        self.size = size
        self.normalize = normalize

    def _finish(self, clip: Tensor) -> Tensor:
        return normalize(clip) if self.normalize else clip

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, normalize={self.normalize})"


class TrainTransform(_ClipTransform):
    """Training: shorter-side resize to ``size`` then one random ``size x size`` crop for the whole clip.

    Args:
        size: Output side in pixels (224 in the paper).
        normalize: ImageNet-normalise to float (True) or keep uint8 for :class:`GpuNormalize` (False).
    """

    def __call__(self, clip: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``[t, c, h, w]`` uint8 -> ``[t, c, size, size]``."""
        return self._finish(random_crop(resize(clip, self.size), self.size, generator))


class EvalTransform(_ClipTransform):
    """Evaluation: shorter-side resize to ``size`` then the centre ``size x size`` crop.

    Args:
        size: Output side in pixels.
        normalize: ImageNet-normalise to float (True) or keep uint8 for :class:`GpuNormalize` (False).
    """

    def __call__(self, clip: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``[t, c, h, w]`` uint8 -> ``[t, c, size, size]`` (``generator`` is ignored)."""
        return self._finish(center_crop(resize(clip, self.size), self.size))


class PadSquareTransform(_ClipTransform):
    """TGIF-style: pad to a square (black bars, nothing cropped away) and resize to ``size x size``.

    The decoder resizes the *longer* side to ``size`` (:attr:`decode_side`), so padding then gives the
    square directly.

    Args:
        size: Output side in pixels.
        normalize: ImageNet-normalise to float (True) or keep uint8 for :class:`GpuNormalize` (False).
    """

    decode_side = "longer"

    def __call__(self, clip: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``[t, c, h, w]`` uint8 -> ``[t, c, size, size]`` (``generator`` is ignored)."""
        return self._finish(resize(pad_to_square(clip), self.size, side="longer"))


class FrameRandomCropTransform(_ClipTransform):
    """The release's default training transform (``img_rand_crop``): shorter-side resize to ``size``, then an
    *independent* random ``size x size`` crop for every frame (the crop jitters from frame to frame).

    Kept selectable for reproduction; :class:`TrainTransform` (one crop per clip) is the default, because
    per-frame crops add spurious motion between frames.

    Args:
        size: Output side in pixels.
        normalize: ImageNet-normalise to float (True) or keep uint8 for :class:`GpuNormalize` (False).
    """

    def __call__(self, clip: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``[t, c, h, w]`` uint8 -> ``[t, c, size, size]``."""
        clip = resize(clip, self.size)
        frames = [random_crop(frame[None], self.size, generator) for frame in clip]
        return self._finish(torch.cat(frames))


TRANSFORMS: dict[str, type[_ClipTransform]] = {
    "random_crop": TrainTransform,
    "center_crop": EvalTransform,
    "pad_square": PadSquareTransform,
    "frame_random_crop": FrameRandomCropTransform,
    "train": TrainTransform,
    "eval": EvalTransform,
}
"""CPU clip transforms by name (``train`` / ``eval`` are aliases of ``random_crop`` / ``center_crop``)."""


def build_transform(kind: str, size: int, normalize: bool = True) -> _ClipTransform:
    """A CPU transform by name, a key of :data:`TRANSFORMS`: ``"random_crop"`` (one random crop per clip),
    ``"center_crop"``, ``"pad_square"`` (TGIF: pad to a square, nothing cropped) or ``"frame_random_crop"``
    (the release's per-frame random crops).

    Raises:
        ValueError: Unknown name (the message lists the known ones).
    """
    if kind not in TRANSFORMS:
        raise ValueError(f"unknown transform {kind!r}; choose from {sorted(TRANSFORMS)}")
    return TRANSFORMS[kind](size, normalize=normalize)


class GpuNormalize(nn.Module):
    """Batched device-side variant (Kornia): uint8 ``[b, t, c, h, w]`` -> float normalised, optionally resized.

    Used on the accelerator after the batch transfer when the CPU transform ran with ``normalize=False``;
    the per-pixel float work then happens once per batch on the device instead of in every worker.

    Args:
        size: If given, resize every frame to ``size x size`` (bilinear, antialiased) on the device.
    """

    def __init__(self, size: int | None = None) -> None:
        super().__init__()
        self.size = size
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD), persistent=False)

    def forward(self, video: Tensor) -> Tensor:
        """uint8 or float (0..1) ``[b, t, c, h, w]`` -> float ``[b, t, c, h', w']`` ImageNet-normalised."""
        import kornia

        b = video.shape[0]
        frames = rearrange(video, "b t c h w -> (b t) c h w")
        frames = frames.float() / 255.0 if frames.dtype == torch.uint8 else frames.float()
        if self.size is not None and tuple(frames.shape[-2:]) != (self.size, self.size):
            frames = kornia.geometry.transform.resize(frames, (self.size, self.size), antialias=True)
        frames = kornia.enhance.normalize(frames, self.mean, self.std)
        return rearrange(frames, "(b t) c h w -> b t c h w", b=b)
