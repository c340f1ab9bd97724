"""The preprocessing a checkpoint needs, saved with it: frames, sampling, size, crop / pad, normalisation, text.

A :class:`Preprocessing` travels in ``config.json`` (``save_pretrained``) and in Lightning checkpoints (the
``violetv2`` entry), so inference never asks the caller how the model was trained. It turns one input (a
path, raw bytes, or uint8 ``[t, c, h, w]`` frames) into the float ``[n, t, c, h, w]`` clips the model was
evaluated on, with exactly the decoder and transform calls of
:class:`~violetv2.data.dataset.VideoTextDataset` in evaluation mode.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_transform
from ..data.video import NumClips, read_clips, sample_indices

__all__ = ["Preprocessing", "SAMPLINGS", "TRANSFORMS"]

TRANSFORMS = ("center_crop", "pad_square")
"""Evaluation transforms: shorter-side resize + centre crop, or pad to a square + resize (TGIF)."""
SAMPLINGS = ("release", "segments")
"""Frame sampling rules of :func:`~violetv2.data.video.sample_indices` (evaluation mode)."""


@dataclass
class Preprocessing:
    """How a model's inputs are made (evaluation mode).

    Args:
        num_frames: Frames per clip (T).
        image_size: Frame side in pixels after the transform.
        transform: ``"center_crop"`` (shorter-side resize, centre crop) or ``"pad_square"`` (black bars +
            resize, TGIF).
        sampling: ``"release"`` (VIOLETv2's evenly spaced frames) or ``"segments"`` (segment centres).
        num_clips: Clips per video (multi-clip testing; ``"all"``: the release's ``ceil(N / T)`` clips); their
            rows are ``(b n)`` in a batch.
        mean: Per-channel mean of the normalisation (RGB, 0..1 scale).
        std: Per-channel standard deviation of the normalisation.
        max_text_len: Text length ``L`` of the task's layout (its prompts add their own fixed suffix).
        tokenizer: Tokenizer directory or name; ``"."`` is the directory of the saved model itself.
    """

    num_frames: int = 4
    image_size: int = 224
    transform: str = "center_crop"
    sampling: str = "release"
    num_clips: NumClips = 1
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    max_text_len: int = 25
    tokenizer: str | None = None

    def __post_init__(self) -> None:
        self.mean = tuple(float(x) for x in self.mean)  # type: ignore[assignment]
        self.std = tuple(float(x) for x in self.std)  # type: ignore[assignment]
        problems = []
        if self.transform == "eval":  # the data package's alias
            self.transform = "center_crop"
        if self.transform not in TRANSFORMS:
            problems.append(f"transform={self.transform!r} (choose from {TRANSFORMS})")
        if self.sampling not in SAMPLINGS:
            problems.append(f"sampling={self.sampling!r} (choose from {SAMPLINGS})")
        if not (self.num_clips == "all" or (isinstance(self.num_clips, int) and self.num_clips >= 1)):
            problems.append(f"num_clips={self.num_clips!r} (an integer >= 1 or 'all')")
        for name in ("num_frames", "image_size", "max_text_len"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name}={getattr(self, name)} (must be >= 1)")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            problems.append(f"mean={self.mean}, std={self.std} (3 values each, std > 0)")
        if problems:
            raise ValueError("invalid preprocessing: " + "; ".join(problems))

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        out = dataclasses.asdict(self)
        out["mean"], out["std"] = list(self.mean), list(self.std)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> Preprocessing:
        """Inverse of :meth:`to_dict`; an unknown key is an error naming it and ``source``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown preprocessing keys {unknown}; known: {sorted(known)}")
        return cls(**data)

    def resolve_tokenizer(self, base: str | os.PathLike | None) -> Preprocessing:
        """A copy whose ``"."`` tokenizer points at ``base`` (the directory the model was loaded from)."""
        if self.tokenizer == "." and base is not None:
            return dataclasses.replace(self, tokenizer=os.fspath(base))
        return self

    # ------------------------------------------------------------------ video
    def _transform(self) -> Any:
        return build_transform(self.transform, self.image_size, normalize=False)

    def normalize(self, clip: Tensor) -> Tensor:
        """uint8 ``[..., c, h, w]`` -> float32 normalised with this ``mean`` / ``std``."""
        x = clip.float() / 255.0
        mean = torch.tensor(self.mean, device=x.device).view(3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(3, 1, 1)
        return (x - mean) / std

    def to_images(self, clip: Tensor) -> Tensor:
        """Normalised ``[..., c, h, w]`` -> RGB ``[..., h, w, c]`` in ``[0, 1]`` (for display, e.g. matplotlib)."""
        mean = torch.tensor(self.mean, device=clip.device).view(3, 1, 1)
        std = torch.tensor(self.std, device=clip.device).view(3, 1, 1)
        return (clip.float() * std + mean).clamp(0, 1).movedim(-3, -1)

    def decode(self, source: str | os.PathLike | bytes) -> Tensor:
        """Decode ``num_clips`` clips of a file or its bytes: uint8 ``[n, t, c, h', w']`` (resized on decode).

        Still images give ``num_frames`` copies of their one frame.

        Raises:
            VideoDecodeError: The input is missing, empty, corrupt or not a video / image.
        """
        side = getattr(self._transform(), "decode_side", "shorter")
        return read_clips(
            source,
            self.num_frames,
            train=False,
            num_clips=self.num_clips,
            size=self.image_size,
            side=side,
            sampling=self.sampling,  # type: ignore[arg-type]
        )

    def sample_frames(self, frames: Tensor) -> Tensor:
        """uint8 ``[t, c, h, w]`` decoded frames -> ``[n, num_frames, c, h, w]`` with this sampling."""
        if frames.dim() != 4 or frames.dtype != torch.uint8 or frames.shape[1] != 3:
            raise ValueError(
                f"frames must be uint8 [t, 3, h, w] RGB, got {frames.dtype} {tuple(frames.shape)}"
            )
        clips = sample_indices(
            frames.shape[0],
            self.num_frames,
            train=False,
            num_clips=self.num_clips,
            sampling=self.sampling,  # type: ignore[arg-type]
        )
        return torch.stack([frames[idx] for idx in clips])

    def clips(self, decoded: Tensor) -> Tensor:
        """uint8 ``[n, t, c, h, w]`` -> float ``[n, t, c, size, size]``: the transform, then normalisation."""
        transform = self._transform()
        return torch.stack([self.normalize(transform(clip)) for clip in decoded])

    def __call__(self, item: str | os.PathLike | bytes | Tensor) -> Tensor:
        """One input (path, bytes or uint8 ``[t, c, h, w]`` frames) -> float ``[n, t, c, size, size]``."""
        if isinstance(item, Tensor):
            return self.clips(self.sample_frames(item))
        return self.clips(self.decode(item))
