"""Accuracy over every question (multiple choice, open-ended QA, fill-in-the-blank), deduplicated by sample."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from ._state import as_index, cat_state, first_occurrence

__all__ = ["AccuracyMetric", "accuracy"]

IGNORE_INDEX = -100


def accuracy(preds: Tensor, target: Tensor) -> float:
    """Percentage of ``preds == target`` over ALL rows; a target of ``-100`` (unanswerable) counts as wrong.

    Args:
        preds: ``[n]`` predicted class / token ids.
        target: ``[n]`` true ids; ``-100`` marks answers the model cannot produce (multi-piece or
            out-of-vocabulary answers): they stay in the denominator.
    """
    if preds.shape != target.shape or preds.ndim != 1:
        raise ValueError(f"preds {tuple(preds.shape)} and target {tuple(target.shape)} must both be [n]")
    if preds.numel() == 0:
        raise ValueError("accuracy of zero questions is undefined")
    correct = (preds.long() == target.long()) & (target != IGNORE_INDEX)
    return 100.0 * correct.double().mean().item()


class AccuracyMetric(Metric):
    """Accuracy (percent) over every distinct question seen on every rank.

    Pass one prediction per question with its dataset index; rows whose index was already seen (the padded
    duplicates of a ``DistributedSampler``) are dropped before counting (first occurrence kept). Targets
    of ``-100`` count as wrong, never filtered: accuracy is over all test questions.

    Args:
        kwargs: Passed to ``torchmetrics.Metric``.

    ``compute`` returns a float64 scalar tensor.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name in ("preds", "target", "index"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, preds: Tensor, target: Tensor, index: Tensor) -> None:
        """Add a batch.

        Args:
            preds: ``[b]`` predicted ids, or ``[b, c]`` scores (arg-max taken).
            target: ``[b]`` true ids (``-100``: unanswerable, counted as wrong).
            index: ``[b]`` dataset index of each question.
        """
        preds = preds.detach()
        if preds.ndim == target.ndim + 1:
            preds = preds.argmax(-1)
        if preds.shape != target.shape or target.ndim != 1:
            raise ValueError(f"preds {tuple(preds.shape)} and target {tuple(target.shape)} must both be [b]")
        if preds.is_floating_point():
            raise TypeError(f"preds must be integer ids or [b, c] scores, got {preds.dtype} of shape [b]")
        self.preds.append(preds.long())
        self.target.append(target.detach().long().to(preds.device))
        self.index.append(as_index(index, "index", target.shape[0]).to(preds.device))

    def compute(self) -> Tensor:
        """Accuracy in percent."""
        dev = self.device
        index = cat_state(self.index, torch.long, dev)
        keep = first_occurrence(index)
        preds = cat_state(self.preds, torch.long, dev)[keep]
        target = cat_state(self.target, torch.long, dev)[keep]
        return torch.tensor(accuracy(preds, target), dtype=torch.float64, device=dev)
