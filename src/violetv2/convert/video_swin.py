"""Official Video Swin checkpoints (Kinetics-400/600; ``torch.load`` gives ``{"state_dict": {"backbone.*",
"cls_head.*"}}``) -> :class:`~violetv2.models.VideoSwin` / the video encoder of a VioletModel.

The official Swin-B checkpoints already carry a 2-frame patch kernel ``[C, 3, 2, 4, 4]``; VIOLETv2 keeps that
kernel and only changes the temporal stride to 1, so no weight changes are needed. A 1-frame kernel (an image
Swin inflated by hand) is inflated by :func:`inflate_patch_embed`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from ..models.video_swin import VideoSwin
from .keymap import ConversionError, KeyTable, convert_state_dict

__all__ = ["VIDEO_SWIN_TABLE", "video_swin_architecture", "convert_video_swin", "inflate_patch_embed"]

VIDEO_SWIN_TABLE: KeyTable = [
    ("backbone.layers.{}.blocks.{}.attn.relative_position_index", None),  # recomputed
    ("backbone.{*}", "{*}"),
    ("cls_head.{*}", None),  # Kinetics classifier
]


def inflate_patch_embed(weight: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Repeat a ``[C, 3, kt, 4, 4]`` kernel along time to ``shape[2]`` frames, scaled to keep the response
    to a static clip (I3D-style inflation)."""
    if weight.shape == shape:
        return weight
    if weight.shape[2] != 1 or weight.shape[:2] + weight.shape[3:] != shape[:2] + shape[3:]:
        raise ConversionError(f"cannot inflate patch kernel {tuple(weight.shape)} to {shape}")
    return weight.repeat(1, 1, shape[2], 1, 1) / shape[2]


def video_swin_architecture(sd: Mapping[str, Tensor], prefix: str = "backbone.") -> dict:
    """Embed dim, depths, heads and window of a Video Swin state dict, read from its keys and shapes."""
    key = f"{prefix}patch_embed.proj.weight"
    if key not in sd:
        raise ConversionError(f"not a Video Swin checkpoint: no {key!r} (first keys: {list(sd)[:5]})")
    depths, heads = [], []
    stage = 0
    while f"{prefix}layers.{stage}.blocks.0.norm1.weight" in sd:
        n = 0
        while f"{prefix}layers.{stage}.blocks.{n}.norm1.weight" in sd:
            n += 1
        depths.append(n)
        heads.append(sd[f"{prefix}layers.{stage}.blocks.0.attn.relative_position_bias_table"].shape[1])
        stage += 1
    rows = sd[f"{prefix}layers.0.blocks.0.attn.relative_position_bias_table"].shape[0]
    window = _window_from_table(rows)
    return {
        "embed_dim": sd[key].shape[0],
        "depths": tuple(depths),
        "heads": tuple(heads),
        "window": window,
        "patch": (2, 4, 4),
    }


def _window_from_table(rows: int) -> tuple[int, int, int]:
    """The (t, s, s) window whose bias table has ``(2t-1)(2s-1)^2`` rows, preferring s = 7 (all official
    Video Swin models use a 7x7 spatial window)."""
    for s in (7, 6, 5, 4, 3, 2, *range(8, 17), 1):
        q, r = divmod(rows, (2 * s - 1) ** 2)
        if r == 0 and q % 2 == 1:
            return ((q + 1) // 2, s, s)
    raise ConversionError(f"relative position table with {rows} rows matches no (t, s, s) window")


def convert_video_swin(
    sd: Mapping[str, Tensor],
    *,
    temporal_stride: int = 1,
    source_name: str = "checkpoint",
    drop_path: float = 0.0,
) -> VideoSwin:
    """A :class:`VideoSwin` (temporal stride 1 by default, as VIOLETv2) holding an official checkpoint."""
    arch = video_swin_architecture(sd)
    with torch.device("meta"):
        model = VideoSwin(**arch, temporal_stride=temporal_stride, drop_path=drop_path)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    conversion = convert_state_dict(
        sd,
        VIDEO_SWIN_TABLE,
        shapes,
        source_name=source_name,
        transforms={"patch_embed.proj.weight": inflate_patch_embed},
    )
    model = model.to_empty(device="cpu")
    model.load_state_dict(conversion.state_dict, strict=True)
    return model.eval()
