"""Hugging Face BERT (``BertForMaskedLM`` / ``BertForPreTraining`` state dict, or a local ``from_pretrained``
directory) -> the text embeddings, fusion transformer and MLM head of a VioletModel.

VIOLETv2 initialises its cross-modal transformer from ``bert-base-uncased``: only the embeddings feed the text,
the 12 encoder layers run over ``[video, text]``, and the MLM head is copied (untied from the embeddings).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from .keymap import KeyTable

__all__ = ["BERT_TABLE", "normalise_bert_state_dict"]

BERT_TABLE: KeyTable = [
    ("bert.embeddings.position_ids", None),  # index buffer
    ("bert.embeddings.word_embeddings.weight", "backbone.text.word_embeddings.weight"),
    ("bert.embeddings.position_embeddings.weight", "backbone.text.position_embeddings.weight"),
    ("bert.embeddings.token_type_embeddings.weight", "backbone.text.token_type_embeddings.weight"),
    ("bert.embeddings.LayerNorm.{*}", "backbone.text.norm.{*}"),
    ("bert.encoder.layer.{}.attention.self.query.{*}", "backbone.fusion.layers.{}.query.{*}"),
    ("bert.encoder.layer.{}.attention.self.key.{*}", "backbone.fusion.layers.{}.key.{*}"),
    ("bert.encoder.layer.{}.attention.self.value.{*}", "backbone.fusion.layers.{}.value.{*}"),
    ("bert.encoder.layer.{}.attention.output.dense.{*}", "backbone.fusion.layers.{}.attn_out.{*}"),
    ("bert.encoder.layer.{}.attention.output.LayerNorm.{*}", "backbone.fusion.layers.{}.attn_norm.{*}"),
    ("bert.encoder.layer.{}.intermediate.dense.{*}", "backbone.fusion.layers.{}.ffn_in.{*}"),
    ("bert.encoder.layer.{}.output.dense.{*}", "backbone.fusion.layers.{}.ffn_out.{*}"),
    ("bert.encoder.layer.{}.output.LayerNorm.{*}", "backbone.fusion.layers.{}.ffn_norm.{*}"),
    ("bert.pooler.{*}", None),  # VIOLET pools the text [CLS] itself
    ("cls.seq_relationship.{*}", None),  # next-sentence head of BertForPreTraining
    ("cls.predictions.bias", None),  # tied alias of decoder.bias (see normalise_bert_state_dict)
    ("cls.predictions.transform.dense.{*}", "mlm_head.dense.{*}"),
    ("cls.predictions.transform.LayerNorm.{*}", "mlm_head.norm.{*}"),
    ("cls.predictions.decoder.{*}", "mlm_head.decoder.{*}"),
]


def normalise_bert_state_dict(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Fill what HF leaves out when weights are tied, and rename TF-era LayerNorm ``gamma``/``beta``.

    ``save_pretrained`` stores a tied decoder weight only once (as the word embeddings) and may store the MLM
    output bias only as ``cls.predictions.bias``; both are restored here as explicit copies.
    """
    out = {
        k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias"): v
        for k, v in sd.items()
    }
    if not any(k.startswith("bert.") for k in out):
        out = {(k if k.startswith("cls.") else f"bert.{k}"): v for k, v in out.items()}
    if "cls.predictions.decoder.weight" not in out and "bert.embeddings.word_embeddings.weight" in out:
        out["cls.predictions.decoder.weight"] = out["bert.embeddings.word_embeddings.weight"].clone()
    if "cls.predictions.decoder.bias" not in out and "cls.predictions.bias" in out:
        out["cls.predictions.decoder.bias"] = out["cls.predictions.bias"]
    return out
