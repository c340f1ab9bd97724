"""A collection of videos encoded once, saved, reloaded and queried many times (text-to-video retrieval).

The cross-encoder scores every (text, video) pair with the fusion transformer, so nothing text-independent
can be precomputed beyond the video tokens (Video Swin + token projection, the expensive part); a
:class:`VideoIndex` holds exactly those, as the retrieval task's evaluation reuses them for every text.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .inputs import Failure

__all__ = ["VideoIndex", "encoder_fingerprint"]

_FORMAT = "violetv2-video-index"


def encoder_fingerprint(model: nn.Module, preprocessing: dict[str, Any]) -> str:
    """sha256 of the video encoder's weights and the preprocessing: an index is only valid for both."""
    digest = hashlib.sha256(json.dumps(preprocessing, sort_keys=True).encode())
    for name, tensor in model.backbone.video.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


@dataclass
class VideoIndex:
    """Encoded videos: ``tokens [n, nv, d]`` (clips already averaged) with their names.

    Build one with ``model.index_videos(videos)``, query it with ``model.retrieve(texts, videos=index)``.

    Attributes:
        names: One name per encoded video (its path, or ``<bytes #i>`` / ``<tensor #i>``).
        tokens: ``[n, nv, d]`` video tokens as the fusion transformer takes them.
        frames: Frames ``t`` behind the tokens.
        grid: Token grid ``(gh, gw)`` of a frame.
        fingerprint: :func:`encoder_fingerprint` of the model that encoded them.
        failures: Inputs that could not be read when the index was built.
        positions: Position of each encoded video in the input list (unreadable ones are left out).
    """

    names: list[str]
    tokens: Tensor
    frames: int
    grid: tuple[int, int]
    fingerprint: str
    failures: list[Failure] = field(default_factory=list)
    positions: list[int] | None = None

    def __post_init__(self) -> None:
        if self.tokens.dim() != 3 or self.tokens.shape[0] != len(self.names):
            raise ValueError(f"tokens {tuple(self.tokens.shape)} do not match {len(self.names)} names")
        self.grid = tuple(self.grid)  # type: ignore[assignment]
        if self.positions is None:
            self.positions = list(range(len(self.names)))

    def __len__(self) -> int:
        return len(self.names)

    def check(self, fingerprint: str) -> None:
        """Raise unless this index was built by a model with ``fingerprint``."""
        if fingerprint != self.fingerprint:
            raise ValueError(
                "this VideoIndex was built by another video encoder or preprocessing (fingerprint "
                f"{self.fingerprint[:12]}..., this model {fingerprint[:12]}...): rebuild it with "
                "model.index_videos(...)"
            )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the index as one ``.safetensors`` file (tokens + names and bookkeeping in its metadata)."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": _FORMAT,
            "names": self.names,
            "frames": self.frames,
            "grid": list(self.grid),
            "fingerprint": self.fingerprint,
            "failures": [vars(f) for f in self.failures],
            "positions": self.positions,
        }
        save_file({"tokens": self.tokens.detach().cpu().contiguous()}, str(path), {"index": json.dumps(meta)})
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> VideoIndex:
        """Read an index written by :meth:`save`."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device=str(device)) as f:
            meta = json.loads((f.metadata() or {}).get("index", "{}"))
            if meta.get("format") != _FORMAT:
                raise ValueError(f"{path} is not a VideoIndex file (written by VideoIndex.save)")
            tokens = f.get_tensor("tokens")
        failures = [Failure(**f) for f in meta["failures"]]
        grid = tuple(meta["grid"])
        return cls(
            meta["names"], tokens, meta["frames"], grid, meta["fingerprint"], failures, meta["positions"]
        )
