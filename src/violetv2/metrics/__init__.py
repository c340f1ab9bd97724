"""Evaluation metrics: torchmetrics ``Metric`` subclasses (list states gathered across ranks, deduplicated by
sample index, computed once at epoch end) and the pure functions behind them."""

from .accuracy import AccuracyMetric, accuracy
from .caption import CaptionMetrics, caption_scores, tokenize_corpus
from .caption_scores import bleu, cider_d, rouge_l
from .meteor import MeteorScorer, find_java, find_meteor_jar, meteor_score
from .ptb import ptb_tokenize, ptb_tokens
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
    "CaptionMetrics",
    "MeteorScorer",
    "RetrievalMetrics",
    "accuracy",
    "bleu",
    "caption_scores",
    "cider_d",
    "find_java",
    "find_meteor_jar",
    "meteor_score",
    "ptb_tokenize",
    "ptb_tokens",
    "rank_summary",
    "recall_at_k",
    "retrieval_metrics",
    "retrieval_ranks",
    "rouge_l",
    "score_all_pairs",
    "tokenize_corpus",
]
