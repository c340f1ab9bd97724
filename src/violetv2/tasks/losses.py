"""Pre-training and fine-tuning losses: plain torch functions returning ``{"loss": ..., metrics...}``.

- VTM (video-text matching): :func:`vtm_pairs` picks, for every video, its own text plus in-batch negatives;
  the task module scores the pairs with the VTM head; :func:`vtm_loss` is cross-entropy towards column 0.
- MLM: :func:`mask_tokens` corrupts the text, :func:`mlm_loss` scores the predictions.
- MVM: :func:`masked_mean` averages a per-position loss over the masked positions only;
  :func:`masked_sum_over` is the published reduction (a masked sum over a count plus ``1e-5``, divided by a
  constant), see :data:`LOSS_SCALES`.
- Downstream reuse of the VTM head: :func:`bidirectional_contrastive_loss` (retrieval over all B x B pairs)
  and :func:`multiple_choice_loss`.

Every ``"loss"`` is a scalar tensor with a graph; metrics are detached scalar tensors (log them as they are).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..rng import uniform

__all__ = [
    "IGNORE_INDEX",
    "LOSS_SCALES",
    "LossScale",
    "bidirectional_contrastive_loss",
    "mask_tokens",
    "masked_mean",
    "masked_sum_over",
    "mlm_loss",
    "multiple_choice_loss",
    "pair_indices",
    "pairs_to_matrix",
    "vtm_loss",
    "vtm_pairs",
]

IGNORE_INDEX = -100

LossScale = Literal["published", "mean"]
#: How an MVM loss is scaled: ``"published"`` as the public VIOLETv2 code reduces it (its per-target constants:
#: pixel and depth divide the masked-element mean by 3, flow by 2, feature targets sum the L1 over the channels
#: of a patch and divide by 3), ``"mean"`` a plain mean over the masked elements (every target on one scale).
LOSS_SCALES: tuple[str, ...] = ("published", "mean")


def _rand(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device | str | None
) -> Tensor:
    """U[0, 1) noise drawn on the generator's device, returned on ``device``; a list of generators (one per
    row: the per-sample streams of :mod:`violetv2.rng`) draws each row from its own."""
    return uniform(shape, generator, device)


# ----------------------------------------------------------------------------------------------- VTM


def vtm_pairs(
    batch_size: int,
    num_negatives: int | None = 3,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Text indices to pair with every video: own text first, then distinct in-batch negatives.

    Args:
        batch_size: Videos (= texts) in the batch, B.
        num_negatives: Negatives per video, clamped to ``B - 1``. The published default 3 gives
            ``min(B, 4) - 1`` random distinct other texts. ``None`` takes every other text (o = B), in
            increasing index order.
        generator: Random generator for the choice of negatives.
        device: Device of the result.

    Returns:
        Long ``[b, o]``: row i pairs video i with texts ``pairs[i]``; ``pairs[:, 0] == arange(b)``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_negatives is not None and num_negatives < 0:
        raise ValueError(f"num_negatives must be >= 0 or None (all in-batch texts), got {num_negatives}")
    own = torch.arange(batch_size, device=device)
    if num_negatives is None:
        keys = torch.arange(batch_size, device=device, dtype=torch.float32).expand(batch_size, -1).clone()
        num_negatives = batch_size - 1
    else:
        keys = _rand((batch_size, batch_size), generator, device)
        num_negatives = min(num_negatives, batch_size - 1)
    keys[own, own] = float("inf")  # own text sorts last: never a negative
    negatives = keys.argsort(dim=1)[:, :num_negatives]
    return torch.cat([own[:, None], negatives], dim=1)


def pair_indices(pairs: Tensor) -> tuple[Tensor, Tensor]:
    """Flatten ``[b, o]`` pairs to ``(video_idx, text_idx)``, each ``[b*o]``, row-major.

    Score ``video[video_idx]`` with ``text[text_idx]`` and ``.view(b, o)`` the logits for :func:`vtm_loss`.
    """
    b, o = pairs.shape
    return torch.arange(b, device=pairs.device).repeat_interleave(o), pairs.reshape(-1)


def pairs_to_matrix(logits: Tensor, pairs: Tensor) -> Tensor:
    """``[b, b]`` score matrix (``[i, j]``: video i with text j) from the ``[b, o]`` logits of :func:`vtm_pairs`
    with every in-batch text (``o = b``); the diagonal holds the matched pairs."""
    b, o = pairs.shape
    if logits.shape != pairs.shape or o != b:
        raise ValueError(
            f"need the logits of all {b} x {b} in-batch pairs (vtm_negatives=None), got logits "
            f"{tuple(logits.shape)} for pairs {tuple(pairs.shape)}"
        )
    return logits.new_zeros(b, b).scatter(1, pairs, logits)


def vtm_loss(logits: Tensor, temperature: float = 0.05) -> dict[str, Tensor]:
    """Cross-entropy of ``logits / temperature`` towards column 0 (the positive text).

    Args:
        logits: ``[b, o]`` VTM head outputs for the pairs of :func:`vtm_pairs`.
        temperature: Divides the logits (0.05 published).

    Returns:
        ``loss``, ``acc`` (positive ranked first), ``pos_logit`` / ``neg_logit`` (mean raw logits).
    """
    if logits.dim() != 2:
        raise ValueError(f"vtm_loss expects [b, o] logits, got shape {tuple(logits.shape)}")
    _check_temperature(temperature)
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    out = {"loss": F.cross_entropy(logits / temperature, target)}
    detached = logits.detach()
    out["acc"] = (detached.argmax(dim=1) == 0).float().mean()
    out["pos_logit"] = detached[:, 0].mean()
    if logits.shape[1] > 1:
        out["neg_logit"] = detached[:, 1:].mean()
    return out


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


# ----------------------------------------------------------------------------------------------- MLM


def mask_tokens(
    ids: Tensor,
    attention_mask: Tensor,
    *,
    mask_token_id: int,
    vocab_size: int,
    special_ids: Iterable[int],
    prob: float = 0.15,
    mode: Literal["mask", "bert"] = "mask",
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Select MLM positions and corrupt them.

    Each real (``attention_mask`` 1), non-special token is selected with probability ``prob``; a sequence
    with any selectable token but no selection gets one random selectable token, so every caption
    contributes. ``mask_token_id`` always counts as special.

    Args:
        ids: ``[b, l]`` token ids.
        attention_mask: ``[b, l]`` 1 on real tokens, 0 on padding.
        mask_token_id: Id of ``[MASK]``.
        vocab_size: Vocabulary size (random replacements in ``bert`` mode are drawn below it).
        special_ids: Ids never selected ([CLS], [SEP], [PAD], ...).
        prob: Selection probability (0.15 published).
        mode: ``"mask"``: every selected token becomes ``[MASK]`` (published); ``"bert"``: 80% ``[MASK]``,
            10% a random non-special token, 10% unchanged.
        generator: Random generator.

    Returns:
        ``(masked_ids, labels)``: corrupted ids, and the original ids at selected positions, -100 elsewhere.
    """
    _check_mask_tokens_args(ids, attention_mask, mask_token_id, vocab_size, prob, mode)
    special = torch.tensor(sorted({*special_ids, mask_token_id}), device=ids.device, dtype=ids.dtype)
    maskable = attention_mask.bool() & ~torch.isin(ids, special)
    selected = _select(maskable, prob, generator)
    labels = torch.where(selected, ids, torch.full_like(ids, IGNORE_INDEX))
    replacement = torch.full_like(ids, mask_token_id)
    if mode == "bert":
        replacement = _bert_replacement(ids, replacement, special, vocab_size, generator)
    return torch.where(selected, replacement, ids), labels


def _check_mask_tokens_args(
    ids: Tensor, attention_mask: Tensor, mask_token_id: int, vocab_size: int, prob: float, mode: str
) -> None:
    if ids.dim() != 2 or ids.shape != attention_mask.shape:
        raise ValueError(
            f"ids and attention_mask must both be [b, l], got {tuple(ids.shape)} and {tuple(attention_mask.shape)}"
        )
    if not 0.0 < prob <= 1.0:
        raise ValueError(f"prob must be in (0, 1], got {prob}")
    if mode not in ("mask", "bert"):
        raise ValueError(f"mode must be 'mask' or 'bert', got {mode!r}")
    if not 0 <= mask_token_id < vocab_size:
        raise ValueError(f"mask_token_id={mask_token_id} outside the vocabulary of {vocab_size}")


def _select(maskable: Tensor, prob: float, generator: torch.Generator | None) -> Tensor:
    """Bernoulli(prob) over maskable positions, plus one forced pick in rows that got none."""
    noise = _rand(tuple(maskable.shape), generator, maskable.device)
    selected = maskable & (noise < prob)
    needs_one = maskable.any(dim=1) & ~selected.any(dim=1)
    pick = torch.where(maskable, noise, -1.0).argmax(dim=1)  # a random maskable position per row
    forced = torch.arange(maskable.shape[1], device=maskable.device) == pick[:, None]
    return selected | (needs_one[:, None] & forced)  # no boolean indexing: no host sync on accelerators


def _bert_replacement(
    ids: Tensor, masked: Tensor, special: Tensor, vocab_size: int, generator: torch.Generator | None
) -> Tensor:
    """80% ``[MASK]`` / 10% random non-special token / 10% original, decided per position."""
    allowed = torch.ones(vocab_size, dtype=torch.bool, device=ids.device)
    allowed[special[special < vocab_size]] = False
    pool = allowed.nonzero().squeeze(1)
    u = _rand(tuple(ids.shape), generator, ids.device)
    pick = (_rand(tuple(ids.shape), generator, ids.device) * len(pool)).long().clamp_max(len(pool) - 1)
    random_ids = pool[pick].to(ids.dtype)
    return torch.where(u < 0.8, masked, torch.where(u < 0.9, random_ids, ids))


def mlm_loss(logits: Tensor, labels: Tensor, ignore_index: int = IGNORE_INDEX) -> dict[str, Tensor]:
    """Cross-entropy over the labelled positions and their accuracy.

    Args:
        logits: ``[..., vocab]`` MLM head outputs (e.g. ``[b, l, vocab]``).
        labels: ``[...]`` target ids, ``ignore_index`` where nothing is predicted.
        ignore_index: Label value to skip.

    Returns:
        ``loss`` (0 with a graph when no position is labelled, instead of NaN), ``acc`` (masked-token
        accuracy), ``num_masked``.
    """
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match labels {tuple(labels.shape)} + [vocab]")
    flat_logits, flat_labels = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
    keep = flat_labels != ignore_index
    num = keep.sum()
    per_token = F.cross_entropy(flat_logits, flat_labels, ignore_index=ignore_index, reduction="none")
    hits = (flat_logits.detach().argmax(dim=-1) == flat_labels) & keep
    denom = num.clamp_min(1).to(per_token.dtype)
    return {"loss": per_token.sum() / denom, "acc": hits.sum() / denom, "num_masked": num}


# ----------------------------------------------------------------------------------------------- MVM


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` over the positions where ``mask`` is True.

    ``mask`` may have fewer trailing dimensions than ``values`` (a ``[b, t, gh, gw]`` patch mask against a
    ``[b, t, gh, gw, d]`` loss map): it is broadcast over the missing trailing dimensions, so the result is
    the mean over every element of every masked position. With nothing masked the result is 0 with a graph.
    """
    if mask.dim() > values.dim():
        raise ValueError(f"mask {tuple(mask.shape)} has more dimensions than values {tuple(values.shape)}")
    mask = mask.reshape(*mask.shape, *([1] * (values.dim() - mask.dim())))
    weight = mask.to(values.dtype).expand_as(values)
    return (values * weight).sum() / weight.sum().clamp_min(1.0)


def masked_sum_over(
    values: Tensor, mask: Tensor, *, per: Literal["element", "position"] = "element", divisor: float = 1.0
) -> Tensor:
    """The published MVM reduction: ``sum(values * mask) / (count + 1e-5) / divisor``.

    ``mask`` broadcasts over the trailing dimensions of ``values`` it lacks (as in :func:`masked_mean`).
    ``per="element"`` counts every masked element (the published pixel, HOG, depth and flow losses: the
    masked-element mean, up to the ``1e-5``); ``per="position"`` counts masked positions over every dimension
    but the last, whose values are summed, not averaged (the published feature losses: the L1 summed over the
    ``C`` channels of each masked patch, i.e. ``C`` times the mean; ``mask`` must then be 1 along that last
    dimension). With nothing masked the result is 0 with a graph.
    """
    if mask.dim() > values.dim():
        raise ValueError(f"mask {tuple(mask.shape)} has more dimensions than values {tuple(values.shape)}")
    if per not in ("element", "position"):
        raise ValueError(f"per must be 'element' or 'position', got {per!r}")
    mask = mask.reshape(*mask.shape, *([1] * (values.dim() - mask.dim())))
    weight = mask.to(values.dtype)
    total = (values * weight).sum()
    count = weight.expand_as(values).sum() if per == "element" else weight.expand(*values.shape[:-1], 1).sum()
    return total / (count + 1e-5) / divisor


def check_loss_scale(loss_scale: str) -> None:
    """Raise a ``ValueError`` naming ``loss_scale`` unless it is one of :data:`LOSS_SCALES`."""
    if loss_scale not in LOSS_SCALES:
        raise ValueError(f"loss_scale must be one of {LOSS_SCALES}, got {loss_scale!r}")


# ------------------------------------------------------------------------------------------- downstream


def bidirectional_contrastive_loss(
    scores: Tensor, temperature: float = 0.05, reduction: Literal["sum", "mean"] = "sum"
) -> dict[str, Tensor]:
    """Softmax cross-entropy over all B x B video-text pairs in both directions (retrieval fine-tuning).

    Args:
        scores: ``[b, b]`` VTM logits, ``scores[i, j]`` for video i with text j; the diagonal is positive.
        temperature: Divides the scores (0.05 published).
        reduction: How the two directions combine: ``"sum"`` as the published retrieval loss does
            (``-mean diag log_softmax(rows) - mean diag log_softmax(columns)``), or ``"mean"`` (half of it).

    Returns:
        ``loss``, ``loss_v2t``, ``loss_t2v``, ``acc_v2t``, ``acc_t2v`` (positive ranked first).
    """
    if scores.dim() != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"scores must be a square [b, b] matrix, got {tuple(scores.shape)}")
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    _check_temperature(temperature)
    target = torch.arange(scores.shape[0], device=scores.device)
    v2t = F.cross_entropy(scores / temperature, target)
    t2v = F.cross_entropy(scores.t() / temperature, target)
    loss = v2t + t2v if reduction == "sum" else (v2t + t2v) / 2
    detached = scores.detach()
    return {
        "loss": loss,
        "loss_v2t": v2t.detach(),
        "loss_t2v": t2v.detach(),
        "acc_v2t": (detached.argmax(dim=1) == target).float().mean(),
        "acc_t2v": (detached.argmax(dim=0) == target).float().mean(),
    }


def multiple_choice_loss(scores: Tensor, label: Tensor, temperature: float = 1.0) -> dict[str, Tensor]:
    """Cross-entropy over the options of every question (published: plain CE on the VTM logits).

    Args:
        scores: ``[b, o]`` one VTM logit per (video, question + option) pair.
        label: ``[b]`` index of the correct option.
        temperature: Divides the scores (1.0: none, as published).

    Returns:
        ``loss`` and ``acc``.
    """
    if scores.dim() != 2 or label.shape != scores.shape[:1]:
        raise ValueError(
            f"expected scores [b, o] and label [b], got {tuple(scores.shape)} and {tuple(label.shape)}"
        )
    if ((label < 0) | (label >= scores.shape[1])).any():
        raise ValueError(f"label values must be in [0, {scores.shape[1]}), got {label.tolist()}")
    _check_temperature(temperature)
    loss = F.cross_entropy(scores / temperature, label)
    acc = (scores.detach().argmax(dim=1) == label).float().mean()
    return {"loss": loss, "acc": acc}
