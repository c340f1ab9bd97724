"""Checkpoints of the public VIOLETv2 release (tsujuifu/pytorch_empirical-mvm) and of VIOLET v1
(tsujuifu/pytorch_violet): plain ``torch.save(state_dict)`` files, DDP prefix stripped.

The same key table serves both; what differs is detected from the keys: which heads exist (``fc`` = VTM, or
the open-ended QA answer classifier when ``fc.3`` has more than one output; ``fc_mtm`` = MLM; ``fc_mvm`` /
``decoder_*`` = MVM target; ``emb_task`` = the task-token table of the MLM-head downstream models) and the
Video Swin size (Swin-B in v2, Swin-S without the ``enc_img.fc`` projection in v1). Frozen MVM teachers (``feature_model.*``, ``dpt.*``,
``raft.*``, ``dalle.*``) are dropped: they are never part of our checkpoints.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from ..config import VioletConfig
from ..models.video_swin import WindowAttention3D, relative_position_index
from ..models.violet import VioletModel
from .keymap import Conversion, ConversionError, KeyTable, convert_state_dict, export_state_dict

__all__ = [
    "RELEASE_TABLE",
    "ReleaseLayout",
    "convert_release",
    "detect_layout",
    "export_release",
    "release_conversion",
]

log = logging.getLogger(__name__)

TEACHER_PREFIXES = ("feature_model.", "dpt.", "raft.", "dalle.")

RELEASE_TABLE: KeyTable = [
    # text: BERT embeddings only
    ("enc_txt.emb_txt.position_ids", None),  # index buffer, recomputed
    ("enc_txt.emb_txt.word_embeddings.weight", "backbone.text.word_embeddings.weight"),
    ("enc_txt.emb_txt.position_embeddings.weight", "backbone.text.position_embeddings.weight"),
    ("enc_txt.emb_txt.token_type_embeddings.weight", "backbone.text.token_type_embeddings.weight"),
    ("enc_txt.emb_txt.LayerNorm.{*}", "backbone.text.norm.{*}"),
    # cross-modal transformer (HF BertEncoder names)
    ("trsfr.layer.{}.attention.self.query.{*}", "backbone.fusion.layers.{}.query.{*}"),
    ("trsfr.layer.{}.attention.self.key.{*}", "backbone.fusion.layers.{}.key.{*}"),
    ("trsfr.layer.{}.attention.self.value.{*}", "backbone.fusion.layers.{}.value.{*}"),
    ("trsfr.layer.{}.attention.output.dense.{*}", "backbone.fusion.layers.{}.attn_out.{*}"),
    ("trsfr.layer.{}.attention.output.LayerNorm.{*}", "backbone.fusion.layers.{}.attn_norm.{*}"),
    ("trsfr.layer.{}.intermediate.dense.{*}", "backbone.fusion.layers.{}.ffn_in.{*}"),
    ("trsfr.layer.{}.output.dense.{*}", "backbone.fusion.layers.{}.ffn_out.{*}"),
    ("trsfr.layer.{}.output.LayerNorm.{*}", "backbone.fusion.layers.{}.ffn_norm.{*}"),
    # video tokens
    ("enc_img.emb_cls", "backbone.video.cls_token"),
    ("enc_img.emb_pos", "backbone.video.spatial_pos"),
    ("enc_img.emb_len", "backbone.video.temporal_pos"),
    ("enc_img.emb_odr", None),  # frame-order embedding, unused by the published forward
    ("enc_img.swin.layers.{}.blocks.{}.attn.relative_position_index", None),  # index buffer, recomputed
    ("enc_img.swin.{*}", "backbone.video.swin.{*}"),
    ("enc_img.fc.{*}", "backbone.video.fc.{*}"),
    ("enc_img.norm.{*}", "backbone.video.norm.{*}"),
    # heads
    ("fc.1.{*}", "{fc}.fc1.{*}"),  # vtm_head, or answer_head for the QA classifier
    ("fc.3.{*}", "{fc}.fc2.{*}"),
    ("fc_mtm.predictions.bias", None),  # the same tied Parameter as decoder.bias (checked equal)
    ("fc_mtm.predictions.transform.dense.{*}", "mlm_head.dense.{*}"),
    ("fc_mtm.predictions.transform.LayerNorm.{*}", "mlm_head.norm.{*}"),
    ("fc_mtm.predictions.decoder.{*}", "mlm_head.decoder.{*}"),
    ("emb_task", "task_embedding"),  # task-token rows of the MLM-head downstream models
    ("decoder_pixel.0.{*}", "mvm_heads.pixel.conv.{*}"),
    ("decoder_hog.0.{*}", "mvm_heads.hog_release.conv.{*}"),
    ("decoder_depth.0.{*}", "mvm_heads.depth.conv.{*}"),
    ("decoder_flow.0.{*}", "mvm_heads.flow.conv.{*}"),
    ("decoder_vq.0.{*}", "mvm_heads.vq.decoder.conv.{*}"),
    ("fc_mvm.1.{*}", "mvm_heads.{mvm}.fc1.{*}"),
    ("fc_mvm.3.{*}", "mvm_heads.{mvm}.fc2.{*}"),
    # frozen teachers: never part of our checkpoints
    *[(p + "{*}", None) for p in TEACHER_PREFIXES],
]


@dataclass
class ReleaseLayout:
    """What a release checkpoint contains (``preset`` is empty when no preset has its Video Swin width).

    ``num_answers`` is set (and ``vtm`` False) for the open-ended QA classifier, whose ``fc`` ends in
    ``size_vocab`` outputs instead of one matching logit.
    """

    preset: str
    vtm: bool
    mlm: bool
    mvm: tuple[str, ...]
    has_task_embedding: bool
    num_answers: int | None = None

    @property
    def fc_target(self) -> str:
        """Our module behind the release's ``fc``."""
        return "answer_head" if self.num_answers is not None else "vtm_head"


def _fc_mvm_kind(sd: Mapping[str, Tensor]) -> str | None:
    if "fc_mvm.3.weight" not in sd:
        return None
    if "decoder_vq.0.weight" in sd:
        return "vq"
    out = sd["fc_mvm.3.weight"].shape[0]
    if out == 8192:
        return "vq_patch"  # VIOLET v1: one DALL-E code per 32x32 patch
    if any(k.startswith("feature_model.patch_embed.") for k in sd):
        return "vidswin"  # a Video Swin teacher
    return "sif"  # 2-D Swin teacher (or none kept): the VIOLETv2 default


def detect_layout(sd: Mapping[str, Tensor]) -> ReleaseLayout:
    """Infer the preset and heads of a release state dict from its keys and shapes."""
    key = "enc_img.swin.patch_embed.proj.weight"
    if key not in sd:
        raise ConversionError(f"not a VIOLET release checkpoint: no {key!r} (first keys: {list(sd)[:5]})")
    embed = sd[key].shape[0]
    presets = {128: "violetv2-base", 96: "violet-v1-base"}
    mvm = [k for k in ("pixel", "depth", "flow") if f"decoder_{k}.0.weight" in sd]
    if "decoder_hog.0.weight" in sd:
        mvm.append("hog_release")
    if kind := _fc_mvm_kind(sd):
        mvm.append(kind)
    fc_out = sd["fc.3.weight"].shape[0] if "fc.3.weight" in sd else None
    return ReleaseLayout(
        preset=presets.get(embed, ""),
        vtm=fc_out == 1,
        mlm="fc_mtm.predictions.decoder.weight" in sd,
        mvm=tuple(mvm),
        has_task_embedding="emb_task" in sd,
        num_answers=fc_out if fc_out is not None and fc_out > 1 else None,
    )


def release_conversion(
    sd: Mapping[str, Tensor], *, source_name: str = "checkpoint", config: VioletConfig | None = None
) -> tuple[Conversion, ReleaseLayout, VioletModel]:
    """Apply the key table without loading: the converted tensors, the layout and the model on ``meta``.

    Works on ``meta`` tensors, so the full-size key map can be checked without allocating weights.
    """
    layout = detect_layout(sd)
    if config is None and not layout.preset:
        width = sd["enc_img.swin.patch_embed.proj.weight"].shape[0]
        raise ConversionError(
            f"{source_name}: Video Swin width {width} matches no preset (128 = violetv2-base, 96 = "
            "violet-v1-base); pass config=VioletConfig(...)"
        )
    cfg = config or VioletConfig.from_name(layout.preset)
    _check_tied_bias(sd, source_name)
    with torch.device("meta"):
        model = VioletModel(
            cfg,
            vtm=layout.vtm,
            mlm=layout.mlm,
            mvm=layout.mvm,
            task_embedding=layout.has_task_embedding,
            num_answers=layout.num_answers,
        )
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    table = _table(_fc_mvm_kind(sd) or "sif", layout.fc_target)
    return convert_state_dict(sd, table, shapes, source_name=source_name), layout, model


def convert_release(
    sd: Mapping[str, Tensor], *, source_name: str = "checkpoint", config: VioletConfig | None = None
) -> tuple[VioletModel, ReleaseLayout]:
    """Build the matching :class:`VioletModel` and load a release / v1 state dict into it (strictly)."""
    conversion, layout, model = release_conversion(sd, source_name=source_name, config=config)
    model = model.to_empty(device="cpu")
    model.load_state_dict(conversion.state_dict, strict=True)
    return model.eval(), layout


def export_release(model: VioletModel) -> dict[str, Tensor]:
    """The inverse mapping: ``model``'s weights under the release's key names (buffers recomputed, the tied
    MLM bias written under both names), e.g. to run the original code on weights trained here."""
    fc_mvm = next((k for k in model.mvm_heads if k in ("sif", "vidswin", "vq_patch", "vq")), "sif")
    if model.vtm_head is not None and model.answer_head is not None:
        raise ConversionError("the release has one `fc`: a model with both a VTM head and an answer head")
    fc = "answer_head" if model.answer_head is not None else "vtm_head"
    table = [(s, t) for s, t in _table(fc_mvm, fc) if t is not None]
    out = export_state_dict(model.state_dict(), table)
    if "mlm_head.decoder.bias" in model.state_dict():
        out["fc_mtm.predictions.bias"] = out["fc_mtm.predictions.decoder.bias"]
    out["enc_txt.emb_txt.position_ids"] = torch.arange(model.cfg.max_text_positions)[None]
    for name, module in model.backbone.video.swin.named_modules():
        if isinstance(module, WindowAttention3D):
            index = relative_position_index(module.window, module.window)
            out[f"enc_img.swin.{name}.relative_position_index"] = index.clone()
    return out


def _table(fc_mvm: str, fc: str) -> KeyTable:
    """:data:`RELEASE_TABLE` with the MVM feature head and the module behind ``fc`` filled in."""
    return [(s, t.replace("{mvm}", fc_mvm).replace("{fc}", fc) if t else t) for s, t in RELEASE_TABLE]


def _check_tied_bias(sd: Mapping[str, Tensor], source_name: str) -> None:
    a, b = sd.get("fc_mtm.predictions.bias"), sd.get("fc_mtm.predictions.decoder.bias")
    if a is not None and b is not None and not a.is_meta and not torch.equal(a, b):
        # In the release both names are one tied Parameter; when loaded, decoder.bias (later key) wins.
        log.warning("%s: fc_mtm.predictions.bias differs from decoder.bias; using decoder.bias", source_name)
