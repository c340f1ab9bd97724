"""Frozen teacher networks for the MVM targets: loading, input preparation, the SIF checkpoint converter.

Teachers are plain ``nn.Module`` objects held by the target classes in :mod:`violetv2.mvm.targets`; they are
never registered under a LightningModule, so they stay out of the optimizer and of checkpoints. Everything
here imports ``transformers`` lazily.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CLIP_MEAN",
    "CLIP_STD",
    "denormalize",
    "renormalize",
    "resize",
    "freeze",
    "full_precision",
    "TEACHER_WIDTHS",
    "teacher_width",
    "load_hf_teacher",
    "load_raft",
    "read_state_dict",
    "perceiver_flow",
    "raft_flow",
    "swin_base_in22k_config",
    "sif_teacher_state_dict_from_release",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# Output width of the known teachers (the MVM head is built from it at construction, with no download):
# Swin: embed_dim * 2 ** (stages - 1); CLIP / ViT: hidden_size.
TEACHER_WIDTHS: dict[str, int] = {
    "microsoft/swin-tiny-patch4-window7-224": 768,
    "microsoft/swin-small-patch4-window7-224": 768,
    "microsoft/swin-base-patch4-window7-224": 1024,
    "microsoft/swin-base-patch4-window7-224-in22k": 1024,
    "microsoft/swin-base-patch4-window12-384": 1024,
    "microsoft/swin-base-patch4-window12-384-in22k": 1024,
    "microsoft/swin-large-patch4-window7-224": 1536,
    "microsoft/swin-large-patch4-window7-224-in22k": 1536,
    "openai/clip-vit-base-patch32": 768,
    "openai/clip-vit-base-patch16": 768,
    "openai/clip-vit-large-patch14": 1024,
    "openai/clip-vit-large-patch14-336": 1024,
}


def teacher_width(name_or_path: str, kind: Literal["swin", "clip"]) -> int:
    """Feature width of a teacher without loading it and without the network.

    Looked up in :data:`TEACHER_WIDTHS`, else read from ``config.json`` of a local ``save_pretrained``
    directory (a CLIP config may hold the vision part under ``vision_config``).

    Raises:
        ValueError: An unknown hub id with no local directory (pass ``feature_dim`` to the target).
    """
    if name_or_path in TEACHER_WIDTHS:
        return TEACHER_WIDTHS[name_or_path]
    config = Path(name_or_path) / "config.json"
    if not config.is_file():
        raise ValueError(
            f"the width of MVM teacher {name_or_path!r} is unknown: it is not in violetv2.mvm.teachers."
            f"TEACHER_WIDTHS ({', '.join(sorted(TEACHER_WIDTHS))}) and {config} does not exist; pass "
            "feature_dim=<width> in the target's options (e.g. mvm_target_options: {sif: {feature_dim: 1024}})"
        )
    cfg = json.loads(config.read_text())
    cfg = cfg.get("vision_config", cfg) if kind == "clip" else cfg
    try:
        if kind == "swin":
            return int(cfg["embed_dim"] * 2 ** (len(cfg["depths"]) - 1))
        return int(cfg["hidden_size"])
    except KeyError as err:
        raise ValueError(f"{config} has no {err} entry: is it a {kind} teacher?") from err


@contextlib.contextmanager
def full_precision(device: torch.device | str) -> Iterator[None]:
    """Autocast off on ``device``'s type (targets and teachers never run under the training autocast)."""
    device_type = torch.device(device).type
    if not torch.amp.is_autocast_available(device_type):
        yield
        return
    with torch.autocast(device_type, enabled=False):
        yield


def denormalize(frames: Tensor) -> Tensor:
    """ImageNet-normalised ``[n, 3, h, w]`` -> RGB in ``[0, 1]`` (not clamped)."""
    mean = frames.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = frames.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return frames * std + mean


def renormalize(rgb: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """RGB in ``[0, 1]`` ``[n, 3, h, w]`` -> ``(rgb - mean) / std``."""
    return (rgb - rgb.new_tensor(mean).view(1, 3, 1, 1)) / rgb.new_tensor(std).view(1, 3, 1, 1)


def resize(frames: Tensor, size: int | tuple[int, int] | None, mode: str = "bicubic") -> Tensor:
    """Resize ``[n, c, h, w]`` to ``size`` (no-op when ``None`` or already that size)."""
    if size is None:
        return frames
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(frames.shape[-2:]) == size:
        return frames
    kwargs = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    return F.interpolate(frames, size=size, mode=mode, **kwargs)


def freeze(model: nn.Module) -> nn.Module:
    """``eval()`` and ``requires_grad_(False)``; returns the model."""
    model.eval()
    model.requires_grad_(False)
    return model


def load_hf_teacher(model_cls_name: str, name_or_path: str, **kwargs: Any) -> nn.Module:
    """``transformers.<model_cls_name>.from_pretrained(name_or_path)``, frozen, float32.

    Args:
        model_cls_name: A transformers class, e.g. ``"SwinModel"``.
        name_or_path: Hub id or a local directory written by ``save_pretrained``.
        **kwargs: Passed on to ``from_pretrained``.
    """
    import transformers

    cls = getattr(transformers, model_cls_name)
    try:
        model = cls.from_pretrained(name_or_path, **kwargs)
    except OSError as err:
        raise OSError(
            f"could not load the MVM teacher {model_cls_name} from {name_or_path!r}: {err}. Pass a local "
            "directory written by save_pretrained, or a hub id reachable from this machine."
        ) from err
    return freeze(model.float())


def swin_base_in22k_config() -> Any:
    """``SwinConfig`` of ``microsoft/swin-base-patch4-window7-224-in22k``, built locally (no download)."""
    from transformers import SwinConfig

    return SwinConfig(
        image_size=224,
        patch_size=4,
        embed_dim=128,
        depths=[2, 2, 18, 2],
        num_heads=[4, 8, 16, 32],
        window_size=7,
        mlp_ratio=4.0,
        qkv_bias=True,
        hidden_act="gelu",
        layer_norm_eps=1e-5,
    )


# transformers 4.x SwinModel names -> 5.x names (inside encoder.layers.*.blocks.*.)
_V4_TO_V5 = [
    ("attention.self.query.", "attention.q_proj."),
    ("attention.self.key.", "attention.k_proj."),
    ("attention.self.value.", "attention.v_proj."),
    ("attention.output.dense.", "attention.o_proj."),
    (
        "attention.self.relative_position_bias_table",
        "attention.relative_position_bias.relative_position_bias_table",
    ),
    ("intermediate.dense.", "mlp.fc1."),
    ("output.dense.", "mlp.fc2."),
]
_INDEX_BUFFER = re.compile(r"(relative_position_index|position_ids)$")


@lru_cache(maxsize=1)
def installed_swin_scheme() -> Literal["v4", "v5"]:
    """Which key names the installed transformers' ``SwinModel`` uses (probed on the meta device)."""
    from transformers import SwinConfig, SwinModel

    with torch.device("meta"):
        keys = SwinModel(SwinConfig(embed_dim=4, depths=[1], num_heads=[1], window_size=2)).state_dict()
    return "v5" if any(".q_proj." in k for k in keys) else "v4"


def _to_v5(key: str) -> str:
    for old, new in _V4_TO_V5:
        if old in key:
            return key.replace(old, new)
    return key


def _to_v4(key: str) -> str:
    for old, new in _V4_TO_V5:
        if new in key:
            return key.replace(new, old)
    return key


def _index_for_table(table: Tensor) -> Tensor:
    """Swin's 2-D relative position index ``[w*w, w*w]`` for a ``[(2w-1)^2, heads]`` bias table."""
    side = round(table.shape[0] ** 0.5)
    w = (side + 1) // 2
    coords = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :] + (w - 1)
    return (rel[0] * (2 * w - 1) + rel[1]).to(torch.int64)


def sif_teacher_state_dict_from_release(
    sd: Mapping[str, Tensor], prefix: str = "feature_model.", scheme: Literal["auto", "v4", "v5"] = "auto"
) -> dict[str, Tensor]:
    """The SIF teacher (``feature_model.*``, an HF ``SwinModel``) of a VIOLETv2 release state dict, renamed for
    the installed transformers.

    Accepts keys in either naming scheme (4.x ``attention.self.query`` / 5.x ``attention.q_proj``), with or
    without ``prefix``; keys outside ``prefix`` are ignored when any key carries it. Integer index buffers
    (``relative_position_index``, ``position_ids``) are dropped; for a 4.x target the relative position
    indices are recomputed from the bias tables (they are persistent buffers there).

    Args:
        sd: A release (or teacher-only) state dict.
        prefix: Prefix of the teacher keys in ``sd``.
        scheme: Target naming; ``"auto"`` = the installed transformers'.

    Returns:
        A state dict for ``SwinModel.load_state_dict(..., strict=True)``.
    """
    if any(k.startswith(prefix) for k in sd):
        sd = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    foreign = [k for k in sd if not k.startswith(("embeddings.", "encoder.", "layernorm."))]
    if not sd or foreign:
        raise KeyError(
            f"no SIF teacher keys (prefix {prefix!r}) in the state dict; unexpected: {foreign[:3]}"
        )
    target = installed_swin_scheme() if scheme == "auto" else scheme
    rename = _to_v5 if target == "v5" else _to_v4
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        if _INDEX_BUFFER.search(key):
            continue
        new = rename(_to_v5(key))
        if new in out:
            raise KeyError(f"SIF teacher keys collide after renaming: {key!r} -> {new!r}")
        out[new] = value
    if target == "v4":
        for key in [k for k in out if k.endswith("relative_position_bias_table")]:
            out[key.replace("relative_position_bias_table", "relative_position_index")] = _index_for_table(
                out[key]
            )
    return out


def load_raft(weights: str = "default") -> nn.Module:
    """torchvision RAFT-large (optional dependency): ``"default"`` weights or a state-dict file."""
    try:
        from torchvision.models.optical_flow import Raft_Large_Weights, raft_large
    except ImportError as err:
        raise ImportError(
            "the 'raft' optical-flow backend needs torchvision, which violetv2 does not install by default: "
            "`pip install violetv2[teachers]` (matching your torch build), or use backend='perceiver'"
        ) from err
    if weights == "default":
        return raft_large(weights=Raft_Large_Weights.DEFAULT)
    model = raft_large(weights=None)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model


def read_state_dict(path: str | Path, prefix: str = "") -> dict[str, Tensor]:
    """A state dict from ``.safetensors`` / ``.pt`` (a directory means its ``model.safetensors``), with
    ``prefix`` stripped from (and required on) the kept keys."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"teacher weights not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(path))
    else:
        from violetv2.convert.keymap import unwrap_state_dict

        sd = unwrap_state_dict(torch.load(path, map_location="cpu", weights_only=True), str(path))
    if prefix:
        sd = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
        if not sd:
            raise KeyError(f"no key of {path} starts with {prefix!r}")
    return sd


def perceiver_flow(teacher: nn.Module, first: Tensor, second: Tensor) -> Tensor:
    """Flow ``[n, 2 (x, y), h, w]`` in frame pixels from ``PerceiverForOpticalFlow`` for RGB ``[0, 1]`` pairs.

    The model only runs at ``config.train_size``: frames are resized to it (bilinear), mapped to [-1, 1],
    each pixel gets its 3x3 neighbourhood (27 values in ``(kh, kw, c)`` order, zero padding, as TF's
    ``extract_patches`` in the original), and the flow is resized back with each component rescaled.
    """
    size = tuple(teacher.config.train_size)
    h, w = first.shape[-2:]
    pair = torch.stack([resize(x, size, "bilinear") * 2 - 1 for x in (first, second)], 1)  # [n, 2, c, H, W]
    patches = F.unfold(rearrange(pair, "n f c h w -> (n f) c h w"), 3, padding=1)  # [(n f), (c kh kw), H*W]
    patches = rearrange(patches, "(n f) (c k) (h w) -> n f (k c) h w", f=2, c=3, h=size[0])
    flow = rearrange(teacher(inputs=patches).logits, "n h w c -> n c h w")
    scale = flow.new_tensor([w / size[1], h / size[0]]).view(1, 2, 1, 1)
    return resize(flow, (h, w), "bilinear") * scale


def raft_flow(teacher: nn.Module, first: Tensor, second: Tensor, iterations: int = 12) -> Tensor:
    """Flow ``[n, 2, h, w]`` from torchvision RAFT for RGB ``[0, 1]`` pairs (padded to a multiple of 8)."""
    h, w = first.shape[-2:]
    pad_h, pad_w = (-h) % 8, (-w) % 8
    x1, x2 = (F.pad(x * 2 - 1, (0, pad_w, 0, pad_h), mode="replicate") for x in (first, second))
    return teacher(x1, x2, num_flow_updates=iterations)[-1][..., :h, :w]
