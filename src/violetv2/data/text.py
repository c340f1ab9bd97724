"""Tokenisation: the BERT word-piece tokenizer and the per-task text lengths of the paper.

The datasets encode text with the release's layouts (:mod:`violetv2.data.layouts`); :func:`tokenize` is a
generic batch tokenizer (``[CLS] ... [SEP] [PAD]...``, truncation keeps the ``[SEP]``) for ad-hoc use.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from torch import Tensor
from transformers import AutoTokenizer, PreTrainedTokenizerBase

__all__ = [
    "BLANK",
    "MAX_LEN_DOWNSTREAM",
    "MAX_LEN_LONG",
    "MAX_LEN_PRETRAIN",
    "TASK_MAX_LEN",
    "load_tokenizer",
    "tokenize",
]

MAX_LEN_PRETRAIN = 32
"""Text tokens in pre-training (WebVid / CC3M captions)."""
MAX_LEN_DOWNSTREAM = 25
"""Text tokens for most downstream tasks."""
MAX_LEN_LONG = 100
"""Text tokens for TGIF-Action / TGIF-Transition (options in the prompt) and DiDeMo (paragraphs)."""

TASK_MAX_LEN = {
    "pretrain": MAX_LEN_PRETRAIN,
    "downstream": MAX_LEN_DOWNSTREAM,
    "tgif_action": MAX_LEN_LONG,
    "tgif_transition": MAX_LEN_LONG,
    "didemo": MAX_LEN_LONG,
}
"""Max text length by task / benchmark name; anything not listed uses :data:`MAX_LEN_DOWNSTREAM`."""

BLANK = re.compile(r"_{2,}")
"""A fill-in-the-blank gap as the benchmarks write it (LSMDC-FiB: ``_____``)."""


def load_tokenizer(name_or_dir: str) -> PreTrainedTokenizerBase:
    """Load a tokenizer from a local directory or a hub name (``"bert-base-uncased"``).

    Args:
        name_or_dir: Directory written by ``save_pretrained`` or a model name; a name needs the hub cache or
            network on first use.
    """
    return AutoTokenizer.from_pretrained(name_or_dir)


def tokenize(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_len: int,
    pairs: Sequence[str] | None = None,
) -> tuple[Tensor, Tensor]:
    """Token ids and attention mask, padded (and truncated) to exactly ``max_len``.

    Args:
        tokenizer: A BERT-style tokenizer.
        texts: One string per row.
        max_len: Sequence length including ``[CLS]`` / ``[SEP]``.
        pairs: Optional second segment per row (``[CLS] text [SEP] pair [SEP]``); truncation then shortens the
            first segment only, so a short prompt suffix such as ``answer : [MASK]`` always survives.

    Returns:
        ``(ids, mask)``: long ``[b, l]`` each, mask 1 on real tokens.
    """
    encoded = tokenizer(
        list(texts),
        list(pairs) if pairs is not None else None,
        padding="max_length",
        truncation="only_first" if pairs is not None else True,
        max_length=max_len,
        return_tensors="pt",
    )
    return encoded["input_ids"].long(), encoded["attention_mask"].long()
