"""Foreign checkpoints -> violetv2, one key table per source.

Sources: the public VIOLETv2 release (pre-training and downstream models), VIOLET v1, official Video Swin
(Kinetics) and Hugging Face BERT. Every source key is consumed or deliberately dropped and every target key is
filled, or a :class:`ConversionError` names the keys at fault. Files load with ``weights_only=True``;
``.safetensors`` works too.

>>> model = from_release("violetv2_pretrain.pth")           # doctest: +SKIP
>>> save_checkpoint(model, "violetv2_pretrain.ckpt")         # doctest: +SKIP
>>> VioletModule.load_from_checkpoint("violetv2_pretrain.ckpt")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..config import VioletConfig
from ..models.video_swin import VideoSwin
from ..models.violet import VioletModel
from .bert import BERT_TABLE, normalise_bert_state_dict
from .keymap import ConversionError, convert_state_dict, load_state_dict_file, unwrap_state_dict
from .release import ReleaseLayout, convert_release, detect_layout
from .video_swin import VIDEO_SWIN_TABLE, convert_video_swin, inflate_patch_embed, video_swin_architecture

__all__ = [
    "ConversionError",
    "ReleaseLayout",
    "detect_layout",
    "detect_source",
    "from_release",
    "from_v1",
    "from_video_swin",
    "load_bert_into",
    "load_into",
    "load_video_swin_into",
    "read_state_dict",
    "save_checkpoint",
]

log = logging.getLogger(__name__)

StateDictLike = str | os.PathLike | Mapping[str, Tensor]


def read_state_dict(source: StateDictLike) -> tuple[dict[str, Tensor], str]:
    """``(state_dict, name for messages)`` from a path or an in-memory state dict."""
    if isinstance(source, Mapping):
        return unwrap_state_dict(dict(source)), "state dict"
    return load_state_dict_file(source), str(source)


def detect_source(sd: Mapping[str, Tensor]) -> str:
    """``"release"`` (VIOLETv2 / v1), ``"video-swin"``, ``"bert"`` or ``"violetv2"`` (our own keys)."""
    if "enc_img.swin.patch_embed.proj.weight" in sd:
        return "release"
    if "backbone.patch_embed.proj.weight" in sd:
        return "video-swin"
    if any(k.startswith("model.backbone.") for k in sd) or any(k.startswith("backbone.video.") for k in sd):
        return "violetv2"
    if any("embeddings.word_embeddings.weight" in k for k in sd):
        return "bert"
    raise ConversionError(f"unrecognised checkpoint layout (first keys: {list(sd)[:6]})")


def from_release(source: StateDictLike, **kwargs: Any) -> VioletModel:
    """A VioletModel (preset and heads detected from the keys) holding a VIOLETv2 / VIOLET v1 release file."""
    sd, name = read_state_dict(source)
    return convert_release(sd, source_name=name, **kwargs)[0]


from_v1 = from_release  # the same table reads VIOLET v1 (Video Swin-S, no enc_img.fc, VQ patch head)


def from_video_swin(source: StateDictLike, temporal_stride: int = 1) -> VideoSwin:
    """A frozen-ready :class:`VideoSwin` holding an official Kinetics checkpoint (temporal stride 1 default)."""
    sd, name = read_state_dict(source)
    return convert_video_swin(sd, temporal_stride=temporal_stride, source_name=name)


def load_video_swin_into(model: VioletModel, source: StateDictLike) -> None:
    """Initialise ``model``'s Video Swin from an official checkpoint; the architectures must agree."""
    sd, name = read_state_dict(source)
    swin = model.backbone.video.swin
    shapes = {k: tuple(v.shape) for k, v in swin.state_dict().items()}
    arch = video_swin_architecture(sd)
    conversion = convert_state_dict(
        sd,
        VIDEO_SWIN_TABLE,
        shapes,
        source_name=f"{name} (Video Swin {arch})",
        transforms={"patch_embed.proj.weight": inflate_patch_embed},
    )
    swin.load_state_dict(conversion.state_dict, strict=True)


def load_bert_into(model: VioletModel, source: StateDictLike) -> None:
    """Initialise text embeddings, fusion transformer and MLM head from BERT (a Hugging Face name / local
    directory, or a state-dict file). Position rows beyond the model's table are cut off."""
    if isinstance(source, (str, os.PathLike)) and not Path(source, "").is_file():
        from transformers import BertForMaskedLM

        sd, name = BertForMaskedLM.from_pretrained(str(source)).state_dict(), str(source)
    else:
        sd, name = read_state_dict(source)
    sd = normalise_bert_state_dict(sd)
    targets = {
        k: tuple(v.shape)
        for k, v in model.state_dict().items()
        if k.startswith(("backbone.text.", "backbone.fusion.", "mlm_head."))
    }
    if model.mlm_head is None:
        sd = {k: v for k, v in sd.items() if not k.startswith("cls.")}
    rows = targets["backbone.text.position_embeddings.weight"][0]
    key = "bert.embeddings.position_embeddings.weight"
    transforms = {"backbone.text.position_embeddings.weight": lambda w, shape: w[:rows] if key in sd else w}
    conversion = convert_state_dict(sd, BERT_TABLE, targets, source_name=name, transforms=transforms)
    model.load_state_dict(conversion.state_dict, strict=False)


def load_into(model: VioletModel, source: StateDictLike) -> None:
    """Load a release / v1 file or a violetv2 checkpoint into an existing model (e.g. pre-trained weights
    into a downstream model). Every backbone key must be present; heads the checkpoint lacks keep their
    fresh initialisation and heads the model lacks are skipped (both logged)."""
    sd, name = read_state_dict(source)
    kind = detect_source(sd)
    if kind == "release":  # converted with the target's architecture: a mismatch fails on shapes, loudly
        sd = convert_release(sd, source_name=name, config=model.cfg)[0].state_dict()
    elif kind == "violetv2":
        sd = {k.removeprefix("model."): v for k, v in sd.items()}
    else:
        raise ConversionError(f"{name} is a {kind} checkpoint: use load_video_swin_into / load_bert_into")
    own = model.state_dict()
    missing = [k for k in own if k.startswith("backbone.") and k not in sd]
    bad = [
        f"{k} {tuple(sd[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in sd and sd[k].shape != v.shape
    ]
    if missing or bad:
        raise ConversionError(
            f"cannot load {name}: missing backbone keys {missing[:8]}; shape mismatches {bad[:8]}"
        )
    fresh = sorted({k.rsplit(".", 2)[0] for k in own if k not in sd})
    skipped = sorted({k.split(".")[0] for k in sd if k not in own})
    if fresh or skipped:
        log.warning("%s: heads initialised fresh: %s; checkpoint parts not used: %s", name, fresh, skipped)
    model.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)


def save_checkpoint(model: VioletModel, path: str | os.PathLike, **hparams: Any) -> Path:
    """Write ``model`` as a checkpoint that ``VioletModule.load_from_checkpoint`` restores.

    ``hparams`` override the VioletModule arguments recorded (preset and heads are taken from the model).
    """
    import lightning

    cfg = model.cfg
    base = VioletConfig.from_name(cfg.name).to_dict()
    overrides = {k: v for k, v in cfg.to_dict().items() if k != "name" and v != base[k]}
    hyper = {
        "preset": cfg.name,
        "config": overrides or None,
        "vtm_head": model.vtm_head is not None,
        "mlm_head": model.mlm_head is not None,
        "mvm_heads": list(model.mvm_heads.keys()),
        "task_embedding": model.task_embedding is not None,
        "num_answers": None if model.answer_head is None else model.answer_head.fc2.out_features,
        **hparams,
    }
    checkpoint = {
        "state_dict": {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "hyper_parameters": hyper,
        "pytorch-lightning_version": lightning.__version__,
        "violetv2": {"class_path": "violetv2.tasks.base.VioletModule"},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path
