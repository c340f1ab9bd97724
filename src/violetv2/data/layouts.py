"""The downstream text layouts of the VIOLETv2 release, one function per task, token for token.

Every function takes the tokenizer, the strings of one sample and the benchmark's text length ``L``
(``max_len``: 25, or 100 for TGIF-Action / Transition and DiDeMo) and returns long tensors. Labels are
:data:`IGNORE_INDEX` (-100; the release writes -1) everywhere except at the ``[MASK]``.

=================  ===================================================================  ==========
layout             ids                                                                  length
=================  ===================================================================  ==========
``caption``        ``encode(text)`` with ``[CLS]``/``[SEP]``, first ``L - 1`` ids kept       ``L``
                   (an over-long text loses its ``[SEP]``), ``[PAD]`` = 0 to ``L``
``choice``         one ``caption`` row per option of ``question + " " + option`` (the   ``[O, L]``
                   option alone when the question is empty) -- VTM-head multiple choice
``mc_prompt``      ``[CLS] tokens(question + " [SEP] option i: " + option ...)[:L-1]``   ``L + 3``
                   ``[MASK] [SEP] [PAD] * (L - n)``; label = id of ``str(answer index)``
``qa``             ``[CLS] tokens(question)[:L-1] answer : [MASK] [SEP] [PAD]*(L - n)``   ``L + 5``
                   label = the answer's vocabulary id if it is ONE entry, else -100
``fill_blank``     ``caption`` of the sentence with its blank written as ``[MASK]``;       ``L``
                   label = the answer word's id (-100 if not one entry)
=================  ===================================================================  ==========

Literal ``[SEP]`` / ``[MASK]`` in a string stay single special tokens (the tokenizer's added tokens), exactly
as the release's ``bert-base-uncased`` tokenizer does. Masks are ``ids != [PAD]``. (The lengths ``L + 5``
assume ``"answer: "`` is two word pieces, true for BERT and for the synthetic benchmark's tokenizer.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from violetv2.data.text import BLANK

__all__ = [
    "IGNORE_INDEX",
    "LAYOUTS",
    "Encoded",
    "answer_token_id",
    "answer_vocabulary",
    "caption",
    "choice",
    "fill_blank",
    "mc_prompt",
    "qa",
    "with_mask",
]

IGNORE_INDEX = -100
LAYOUTS = ("caption", "choice", "mc_prompt", "qa", "fill_blank")
"""Names accepted by ``text_layout`` arguments."""


@dataclass
class Encoded:
    """One sample's text: ``ids`` / ``mask`` ``[l]`` (``[o, l]`` for ``choice``), ``labels`` ``[l]`` or None."""

    ids: Tensor
    mask: Tensor
    labels: Tensor | None = None


def _pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    return int(tokenizer.pad_token_id)


def _finish(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> tuple[Tensor, Tensor]:
    tensor = torch.tensor(ids, dtype=torch.long)
    return tensor, (tensor != _pad_id(tokenizer)).long()


def _str2txt(tokenizer: PreTrainedTokenizerBase, text: str, max_len: int) -> tuple[Tensor, Tensor]:
    ids = tokenizer.encode(text)[: max_len - 1]
    return _finish(tokenizer, ids + [_pad_id(tokenizer)] * (max_len - len(ids)))


def caption(tokenizer: PreTrainedTokenizerBase, text: str, max_len: int) -> Encoded:
    """The release's ``str2txt``: retrieval, captioning, pre-training captions.

    Args:
        tokenizer: BERT-style tokenizer.
        text: The caption (several sentences of one video already joined by a space).
        max_len: ``L``.
    """
    return Encoded(*_str2txt(tokenizer, text, max_len))


def choice(
    tokenizer: PreTrainedTokenizerBase, question: str, options: Sequence[str], max_len: int
) -> Encoded:
    """VTM-head multiple choice (MSRVTT-MC, LSMDC-MC): one ``caption`` row per option -> ``[O, L]``."""
    rows = [_str2txt(tokenizer, f"{question} {o}" if question else o, max_len) for o in options]
    return Encoded(torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows]))


def answer_token_id(tokenizer: PreTrainedTokenizerBase, answer: str) -> int:
    """The vocabulary id of ``answer`` taken as ONE token (no normalisation), or :data:`IGNORE_INDEX` when it
    is not a vocabulary entry (multi-piece / out-of-vocabulary answers can never be predicted)."""
    token_id = tokenizer.convert_tokens_to_ids(answer)
    if token_id is None or token_id == tokenizer.unk_token_id:
        return IGNORE_INDEX
    return int(token_id)


def with_mask(
    tokenizer: PreTrainedTokenizerBase, head: list[int], suffix: list[int], max_len: int
) -> list[int]:
    """``[CLS] head[:L-1] suffix [MASK] [SEP] [PAD] * (L - len(head[:L-1]))`` (the release's ``append_mask``)."""
    head = head[: max_len - 1]
    tail = [tokenizer.mask_token_id, tokenizer.sep_token_id] + [_pad_id(tokenizer)] * (max_len - len(head))
    return [tokenizer.cls_token_id, *head, *suffix, *tail]


def _label_at_mask(tokenizer: PreTrainedTokenizerBase, ids: Tensor, label: int) -> Tensor:
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[ids == tokenizer.mask_token_id] = label
    return labels


def _pieces(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def mc_prompt(
    tokenizer: PreTrainedTokenizerBase,
    question: str,
    options: Sequence[str],
    answer_index: int | None,
    max_len: int,
    on_cut: Callable[[int], None] | None = None,
) -> Encoded:
    """TGIF-Action / Transition: every option in the prompt, the MLM head names the option index.

    Text ``question [SEP] option 0: ... [SEP] option 4: ...`` word-pieced without special tokens, first
    ``L - 1`` pieces kept (later options drop out), then ``[CLS] ... [MASK] [SEP] [PAD]...`` -> ``L + 3``.

    Args:
        tokenizer: BERT-style tokenizer (``str(i)`` must be a vocabulary entry for every option index).
        question: The question.
        options: The options, in the order the prompt presents them (the file's, unless shuffled).
        answer_index: Index of the right option (None: labels all ignored, e.g. for prediction).
        max_len: ``L``.
        on_cut: Called with the prompt's word-piece count when it is longer than the ``L - 1`` kept.

    Raises:
        ValueError: An option index is not a single vocabulary entry.
    """
    text = question
    for i, option in enumerate(options):
        text += f" {tokenizer.sep_token} option {i}: {option}"
    pieces = _pieces(tokenizer, text)
    if on_cut is not None and len(pieces) > max_len - 1:
        on_cut(len(pieces))
    ids, mask = _finish(tokenizer, with_mask(tokenizer, pieces, [], max_len))
    if answer_index is None:
        return Encoded(ids, mask, torch.full_like(ids, IGNORE_INDEX))
    label = answer_token_id(tokenizer, str(answer_index))
    if label == IGNORE_INDEX:
        raise ValueError(f"option index {answer_index!r} is not a vocabulary entry of the tokenizer")
    return Encoded(ids, mask, _label_at_mask(tokenizer, ids, label))


def qa(tokenizer: PreTrainedTokenizerBase, question: str, answer: str | None, max_len: int) -> Encoded:
    """Open-ended QA with the MLM head (TGIF-Frame, MSRVTT-QA, MSVD-QA): ``[CLS] q answer : [MASK] [SEP]``.

    Args:
        tokenizer: BERT-style tokenizer.
        question: The question.
        answer: The answer string (None: labels all ignored).
        max_len: ``L`` (the output is ``L + 5`` long with BERT's ``answer`` ``:`` pieces).
    """
    ids = with_mask(tokenizer, _pieces(tokenizer, question), _pieces(tokenizer, "answer: "), max_len)
    ids_t, mask = _finish(tokenizer, ids)
    label = IGNORE_INDEX if answer is None else answer_token_id(tokenizer, answer)
    return Encoded(ids_t, mask, _label_at_mask(tokenizer, ids_t, label))


def fill_blank(tokenizer: PreTrainedTokenizerBase, text: str, answer: str | None, max_len: int) -> Encoded:
    """LSMDC-FiB: the sentence with its blank (``_____``, or an already written ``[MASK]``) as ``[MASK]``,
    through :func:`caption`; label = the answer word's id at the ``[MASK]``.

    As in the release, a blank beyond the first ``L - 1`` ids is cut away with the rest (no ``[MASK]``
    left: the sample cannot be answered and counts as wrong).

    Raises:
        ValueError: The text holds no blank or several.
    """
    mask_token = tokenizer.mask_token
    filled, n = BLANK.subn(mask_token, text)
    n += text.count(mask_token)
    if n != 1:
        raise ValueError(f"expected exactly one blank ('_____' or {mask_token}) in {text!r}, found {n}")
    ids, mask = _str2txt(tokenizer, filled, max_len)
    label = IGNORE_INDEX if answer is None else answer_token_id(tokenizer, answer)
    return Encoded(ids, mask, _label_at_mask(tokenizer, ids, label))


def answer_vocabulary(answers: Sequence[str | None], size: int | None = None) -> list[str]:
    """The classifier-head answer vocabulary: the training answers, most frequent first (ties: first seen).

    Args:
        answers: Every training answer (``None`` entries are skipped).
        size: Keep at most this many (the published heads: TGIF-Frame 1540, MSRVTT-QA 1500, MSVD-QA 1000,
            LSMDC-FiB 908); None keeps all.

    Raises:
        ValueError: No answers, or ``size < 1``.
    """
    if size is not None and size < 1:
        raise ValueError(f"answer vocabulary size must be >= 1 or None, got {size}")
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        raise ValueError("no training answers to build an answer vocabulary from")
    return [a for a, _ in counts.most_common(size)]
