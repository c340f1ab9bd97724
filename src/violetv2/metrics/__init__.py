"""Evaluation metrics: torchmetrics ``Metric`` subclasses (list states gathered across ranks, deduplicated by
sample index, computed once at epoch end) and the pure functions behind them."""

from .accuracy import AccuracyMetric, accuracy
from .retrieval import (
    RetrievalMetrics,
    rank_summary,
    recall_at_k,
    retrieval_metrics,
    retrieval_ranks,
    score_all_pairs,
)

__all__ = [
    "AccuracyMetric",
    "RetrievalMetrics",
    "accuracy",
    "rank_summary",
    "recall_at_k",
    "retrieval_metrics",
    "retrieval_ranks",
    "score_all_pairs",
]
