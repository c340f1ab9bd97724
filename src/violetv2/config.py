"""Model configuration: one dataclass, named presets, derived values and validation.

Importing this module needs nothing but the standard library, so a config can be built, printed and
checked before torch is even imported.

>>> cfg = VioletConfig.from_name("violetv2-base")
>>> cfg.video_grid, cfg.swin_out_dim
(7, 1024)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["VioletConfig", "PRESETS", "preset_names", "CheckpointMode", "CHECKPOINT_MODES", "checkpoint_mode"]

CheckpointMode = Literal["none", "video", "fusion", "all"]
CHECKPOINT_MODES: tuple[str, ...] = ("none", "video", "fusion", "all")


def checkpoint_mode(value: str | bool) -> str:
    """Normalise a ``gradient_checkpointing`` value: a mode name, or the old bool (True = ``"all"``)."""
    if isinstance(value, bool):
        return "all" if value else "none"
    if value not in CHECKPOINT_MODES:
        raise ValueError(f"gradient_checkpointing must be one of {CHECKPOINT_MODES} or a bool, got {value!r}")
    return value


@dataclass
class VioletConfig:
    """Architecture of a VIOLET model (Video Swin encoder + BERT-style cross-modal transformer).

    Args:
        name: Preset name this config came from (informational).
        image_size: Input frame size in pixels (square); a multiple of the total stride 32.
        num_frames: Frames per clip (T) the model is built for; at most ``max_frames``.
        max_frames: Rows of the learned temporal table (6 in the published model).
        max_grid: Side of the learned spatial table: it has ``1 + max_grid**2`` rows (14 -> 197).
        spatial_pos: How the spatial table is applied for a ``h x w`` token grid. ``"flat"`` adds its first
            ``1 + h*w`` rows whatever the frame size, as the published model does (checkpoint fidelity);
            ``"interpolate"`` resizes the ``max_grid x max_grid`` table bicubically to ``h x w``.
        swin_embed_dim: Channels after the Video Swin patch embedding.
        swin_depths: Blocks per Video Swin stage.
        swin_heads: Attention heads per Video Swin stage.
        swin_window: Attention window (t, h, w); clipped to the feature map when that is smaller.
        swin_patch: Patch embedding kernel (t, h, w).
        swin_temporal_stride: Temporal stride of the patch embedding: 1 as in VIOLETv2 (one frame of zero
            padding at the end, T frames give T feature maps), 2 as in stock Video Swin.
        swin_mlp_ratio: MLP hidden size / channels in Video Swin blocks.
        swin_drop_path: Maximum stochastic-depth rate (linearly increasing over blocks).
        swin_norm_eps: LayerNorm epsilon inside Video Swin and the video token encoder.
        hidden_size: Width of the cross-modal transformer and of every token.
        num_layers: Layers of the cross-modal transformer.
        num_heads: Attention heads of the cross-modal transformer.
        intermediate_size: FFN width of the cross-modal transformer.
        vocab_size: Word pieces of the text embedding and the MLM head.
        max_text_positions: Rows of the text position table.
        type_vocab_size: Rows of the token-type table (only type 0 is used).
        dropout: Dropout in the text embeddings, fusion transformer and heads.
        attention_dropout: Dropout on fusion attention probabilities.
        layer_norm_eps: LayerNorm epsilon of the text embeddings, fusion transformer and MLM head.
        initializer_range: Standard deviation of the random init of Linear / Embedding weights (BERT: 0.02).
        mvm_feature_dim: Output width of the feature-regression MVM head (SIF / VidSwin targets).
        video_projection: Project Video Swin features to ``hidden_size`` with a Linear (VIOLETv2). VIOLET v1 has
            none: its Video Swin-S already outputs ``hidden_size`` = 768 channels.
        gradient_checkpointing: Activation checkpointing (recompute in backward to save memory): ``"none"``,
            ``"video"`` (every Video Swin block: the published recipe, which checkpoints its video encoder),
            ``"fusion"`` (every fusion layer) or ``"all"``. The old booleans still work: True = ``"all"``,
            False = ``"none"``.
    """

    name: str = "custom"
    image_size: int = 224
    num_frames: int = 4
    max_frames: int = 6
    max_grid: int = 14
    spatial_pos: Literal["flat", "interpolate"] = "flat"
    swin_embed_dim: int = 128
    swin_depths: tuple[int, ...] = (2, 2, 18, 2)
    swin_heads: tuple[int, ...] = (4, 8, 16, 32)
    swin_window: tuple[int, int, int] = (8, 7, 7)
    swin_patch: tuple[int, int, int] = (2, 4, 4)
    swin_temporal_stride: int = 1
    swin_mlp_ratio: float = 4.0
    swin_drop_path: float = 0.2
    swin_norm_eps: float = 1e-5
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    vocab_size: int = 30522
    max_text_positions: int = 512
    type_vocab_size: int = 2
    dropout: float = 0.1
    attention_dropout: float = 0.1
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    mvm_feature_dim: int = 1024
    video_projection: bool = True
    gradient_checkpointing: CheckpointMode = "none"
    # derived in __post_init__
    swin_out_dim: int = field(init=False)
    video_stride: int = field(init=False)
    video_grid: int = field(init=False)
    tokens_per_frame: int = field(init=False)

    def __post_init__(self) -> None:
        self.swin_depths = tuple(int(d) for d in self.swin_depths)
        self.swin_heads = tuple(int(h) for h in self.swin_heads)
        self.swin_window = tuple(int(w) for w in self.swin_window)  # type: ignore[assignment]
        self.swin_patch = tuple(int(p) for p in self.swin_patch)  # type: ignore[assignment]
        self.gradient_checkpointing = checkpoint_mode(self.gradient_checkpointing)  # type: ignore[assignment]
        errors = self._problems()
        if errors:
            raise ValueError(f"invalid VioletConfig {self.name!r}: " + "; ".join(errors))
        n_stages = len(self.swin_depths)
        self.swin_out_dim = self.swin_embed_dim * 2 ** (n_stages - 1)
        self.video_stride = self.swin_patch[1] * 2 ** (n_stages - 1)
        self.video_grid = self.image_size // self.video_stride
        self.tokens_per_frame = 1 + self.video_grid**2

    def _problems(self) -> list[str]:
        p = []
        n_stages = len(self.swin_depths)
        if len(self.swin_heads) != n_stages:
            p.append(f"swin_depths has {n_stages} stages but swin_heads has {len(self.swin_heads)}")
        if len(self.swin_window) != 3 or len(self.swin_patch) != 3:
            p.append("swin_window and swin_patch must have 3 entries (t, h, w)")
            return p
        if self.swin_patch[1] != self.swin_patch[2]:
            p.append(f"swin_patch must be square in space, got {self.swin_patch}")
        stride = self.swin_patch[1] * 2 ** (n_stages - 1)
        if self.image_size <= 0 or self.image_size % stride:
            p.append(f"image_size={self.image_size} is not a positive multiple of the total stride {stride}")
        if self.swin_temporal_stride not in (1, 2):
            p.append(f"swin_temporal_stride must be 1 or 2, got {self.swin_temporal_stride}")
        if self.swin_temporal_stride > self.swin_patch[0]:
            p.append("swin_temporal_stride larger than the temporal patch kernel would skip frames")
        if not 1 <= self.num_frames <= self.max_frames:
            p.append(
                f"num_frames={self.num_frames} must be in 1..max_frames={self.max_frames} (temporal table)"
            )
        grid = self.image_size // stride if stride else 0
        if self.spatial_pos == "flat" and grid * grid > self.max_grid**2:
            p.append(
                f"image_size={self.image_size} gives a {grid}x{grid} grid, more than the {self.max_grid**2} "
                "spatial positions of the table; use spatial_pos='interpolate' or a larger max_grid"
            )
        if self.spatial_pos not in ("flat", "interpolate"):
            p.append(f"spatial_pos must be 'flat' or 'interpolate', got {self.spatial_pos!r}")
        for i, (d, h) in enumerate(zip(self.swin_embed_dims(), self.swin_heads)):
            if d % h:
                p.append(f"Video Swin stage {i}: {d} channels not divisible by {h} heads")
        out_dim = self.swin_embed_dim * 2 ** (n_stages - 1)
        if not self.video_projection and out_dim != self.hidden_size:
            p.append(
                f"video_projection=False needs Video Swin output ({out_dim}) == hidden_size ({self.hidden_size})"
            )
        if self.hidden_size % self.num_heads:
            p.append(f"hidden_size={self.hidden_size} not divisible by num_heads={self.num_heads}")
        if not 0.0 <= self.swin_drop_path < 1.0 or not 0.0 <= self.dropout < 1.0:
            p.append("drop rates must be in [0, 1)")
        return p

    def swin_embed_dims(self) -> list[int]:
        """Channels of every Video Swin stage."""
        return [self.swin_embed_dim * 2**i for i in range(len(self.swin_depths))]

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> VioletConfig:
        """Build a preset by name, optionally overriding fields (``from_name("tiny", num_frames=2)``)."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(preset_names())}")
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls) if f.init}
        if unknown:
            raise ValueError(f"unknown VioletConfig field(s) {sorted(unknown)} for preset {name!r}")
        return cls(**{**PRESETS[name], "name": name, **overrides})

    def to_dict(self) -> dict[str, Any]:
        """The init fields as plain Python values (derived fields left out), e.g. for hparams."""
        out = {}
        for f in dataclasses.fields(self):
            if f.init:
                v = getattr(self, f.name)
                out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VioletConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        unknown = set(d) - {f.name for f in dataclasses.fields(cls) if f.init}
        if unknown:
            raise ValueError(f"unknown VioletConfig field(s): {sorted(unknown)}")
        return cls(**d)


PRESETS: dict[str, dict[str, Any]] = {
    # Exactly the published VIOLETv2 architecture (Video Swin-B K600, temporal stride 1, BERT-base fusion).
    "violetv2-base": {},
    # VIOLET v1: Video Swin-S (embed 96, heads 3-6-12-24); otherwise the same token layout and BERT-base fusion.
    "violet-v1-base": {
        "swin_embed_dim": 96,
        "swin_depths": (2, 2, 18, 2),
        "swin_heads": (3, 6, 12, 24),
        "video_projection": False,
    },
    # A few hundred thousand parameters: CPU tests, the quickstart and the synthetic benchmark.
    "tiny": {
        "image_size": 64,
        "num_frames": 4,
        "max_grid": 4,
        "swin_embed_dim": 16,
        "swin_depths": (1, 1, 1, 1),
        "swin_heads": (1, 2, 2, 4),
        "swin_window": (2, 4, 4),
        "swin_drop_path": 0.0,
        "hidden_size": 64,
        "num_layers": 2,
        "num_heads": 2,
        "intermediate_size": 128,
        "vocab_size": 1024,
        "max_text_positions": 128,
        "mvm_feature_dim": 128,
    },
}


def preset_names() -> list[str]:
    """Names accepted by :meth:`VioletConfig.from_name`."""
    return sorted(PRESETS)
