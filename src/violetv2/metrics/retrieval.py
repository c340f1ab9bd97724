"""Text-video retrieval: scoring every pair with the cross-encoder, ranks, R@k / MdR / MnR in both directions.

Rank conventions (both directions count ties AGAINST the model, so a constant scorer gets the worst rank,
never the best):

- text-to-video: every text has exactly one positive video; its rank is ``1 +`` the number of the other
  videos scoring ``>=`` the positive.
- video-to-text, several captions per video: a video's rank is the best rank among its captions, where
  the other captions of the same video are not competitors (they are right answers too): ``1 +`` the number
  of captions of OTHER videos scoring ``>=`` the video's best-scoring caption. This is the convention of the
  COCO / Flickr30K image-to-text protocol (VSE++, ALBEF, BLIP: the position of the first correct caption in
  the sorted list), with ties resolved against the model. With one caption per video (MSRVTT 1k-A, DiDeMo
  paragraphs, LSMDC) both directions are the plain 1-to-1 ranks. Videos without any caption are candidates
  for text-to-video but not video-to-text queries.

Recall@k is in percent (as the papers report it), the median rank is the usual median (mean of the two
middle ranks for an even count, as ``numpy.median``), the mean rank is the mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from tqdm.auto import tqdm

from ..models.violet import VioletModel
from ._state import as_index, cat_state, first_occurrence

__all__ = [
    "RetrievalMetrics",
    "rank_summary",
    "recall_at_k",
    "retrieval_metrics",
    "retrieval_ranks",
    "score_all_pairs",
]


@torch.no_grad()
def score_all_pairs(
    model: VioletModel,
    video: Tensor,
    text_ids: Tensor,
    text_mask: Tensor,
    *,
    pair_batch: int = 256,
    progress: bool = False,
) -> Tensor:
    """``[num_texts, num_videos]`` VTM logits of every pair (videos are encoded once).

    Args:
        model: Model with a VTM head, in eval mode.
        video: ``[n, t, c, h, w]`` clips.
        text_ids: ``[m, l]`` texts.
        text_mask: ``[m, l]`` their masks.
        pair_batch: Pairs per fusion forward.
        progress: Show a progress bar over texts.
    """
    backbone = model.backbone
    grid = backbone.grid(video)
    tokens = torch.cat([backbone.encode_video(v) for v in video.split(pair_batch)])
    n, m = tokens.shape[0], text_ids.shape[0]
    scores = torch.empty(m, n, device=tokens.device)
    per_text = max(1, pair_batch // n)
    for start in tqdm(range(0, m, per_text), desc="scoring pairs", disable=not progress, leave=False):
        ids, mask = text_ids[start : start + per_text], text_mask[start : start + per_text]
        k = ids.shape[0]
        fused = backbone.fuse(
            tokens.repeat(k, 1, 1),
            ids.repeat_interleave(n, 0),
            mask.repeat_interleave(n, 0),
            frames=video.shape[1],
            grid=grid,
        )
        scores[start : start + k] = model.vtm_logits(fused).view(k, n)
    return scores


def _check_scores(scores: Tensor, text_to_video: Tensor) -> Tensor:
    if scores.ndim != 2:
        raise ValueError(f"scores must be [num_texts, num_videos], got shape {tuple(scores.shape)}")
    if text_to_video.shape != (scores.shape[0],):
        raise ValueError(
            f"text_to_video must be [num_texts] = [{scores.shape[0]}], got shape {tuple(text_to_video.shape)}"
        )
    if text_to_video.numel() and (text_to_video.min() < 0 or text_to_video.max() >= scores.shape[1]):
        raise ValueError(f"text_to_video must index the {scores.shape[1]} videos (columns of scores)")
    if torch.isnan(scores).any():
        raise ValueError(
            f"scores hold {int(torch.isnan(scores).sum())} NaN values; ranks would be meaningless"
        )
    return text_to_video.long().to(scores.device)


def retrieval_ranks(scores: Tensor, text_to_video: Tensor, chunk: int = 256) -> tuple[Tensor, Tensor]:
    """1-based ranks of the positives in both directions (ties count against the model).

    Args:
        scores: ``[num_texts, num_videos]``, higher = better match.
        text_to_video: ``[num_texts]`` column of each text's (single) positive video.
        chunk: Videos handled at once for the video-to-text ranks (bounds memory).

    Returns:
        ``(t2v, v2t)``: ``[num_texts]`` ranks of each text's video among all videos, and ``[num_queries]``
        ranks of each captioned video (ascending column order) among all texts (see module docstring).
    """
    text_to_video = _check_scores(scores, text_to_video)
    scores = scores.float()
    target = scores.gather(1, text_to_video[:, None])
    t2v = (scores >= target).sum(1)  # counts the positive itself: 1 + others >= it
    captioned = torch.unique(text_to_video)
    v2t = []
    for videos in captioned.split(chunk):
        column = scores[:, videos].T  # [v, num_texts]
        positive = text_to_video[None, :] == videos[:, None]
        best = column.masked_fill(~positive, float("-inf")).amax(1, keepdim=True)
        v2t.append(((column >= best) & ~positive).sum(1) + 1)
    v2t = torch.cat(v2t) if v2t else torch.zeros(0, dtype=torch.long, device=scores.device)
    return t2v, v2t


def rank_summary(ranks: Tensor, ks: Sequence[int] = (1, 5, 10), prefix: str = "") -> dict[str, float]:
    """``R@k`` (percent), ``MdR`` and ``MnR`` of 1-based ranks, keys prefixed by ``prefix``."""
    if ranks.numel() == 0:
        raise ValueError("no ranks to summarise (no queries)")
    ranks = ranks.double()
    out = {f"{prefix}R@{k}": 100.0 * (ranks <= k).double().mean().item() for k in ks}
    out[f"{prefix}MdR"] = ranks.quantile(0.5).item()
    out[f"{prefix}MnR"] = ranks.mean().item()
    return out


def retrieval_metrics(
    scores: Tensor,
    text_to_video: Tensor,
    ks: Sequence[int] = (1, 5, 10),
    directions: Sequence[str] = ("t2v", "v2t"),
) -> dict[str, float]:
    """R@k, median and mean rank of text-to-video and video-to-text retrieval from a full score matrix.

    Args:
        scores: ``[num_texts, num_videos]``, higher = better match.
        text_to_video: ``[num_texts]`` column of each text's positive video (several texts may share one).
        ks: Cut-offs of the recalls.
        directions: Subset of ``("t2v", "v2t")``.

    Returns:
        ``{"t2v_R@1": ..., "t2v_R@5": ..., "t2v_R@10": ..., "t2v_MdR": ..., "t2v_MnR": ..., "v2t_R@1": ...}``
        (recalls in percent).
    """
    unknown = set(directions) - {"t2v", "v2t"}
    if unknown:
        raise ValueError(f"unknown retrieval directions {sorted(unknown)}; use 't2v' and/or 'v2t'")
    t2v, v2t = retrieval_ranks(scores, text_to_video)
    out: dict[str, float] = {}
    for name, ranks in (("t2v", t2v), ("v2t", v2t)):
        if name in directions:
            out.update(rank_summary(ranks, ks, prefix=f"{name}_"))
    return out


def recall_at_k(scores: Tensor, positive: Tensor, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """Text-to-video Recall@k (percent), median and mean rank; ties count against the model.

    Args:
        scores: ``[num_texts, num_videos]``, higher = better match.
        positive: ``[num_texts]`` index of each text's video.

    Returns:
        ``{"R@1": ..., "R@5": ..., "R@10": ..., "MdR": ..., "MnR": ...}``.
    """
    t2v, _ = retrieval_ranks(scores, positive)
    return rank_summary(t2v, ks)


class RetrievalMetrics(Metric):
    """Retrieval R@k / MdR / MnR in both directions, accumulated over (text, video) score pairs.

    Each rank passes the pairs it scored; ``compute`` gathers them from every rank (list states,
    ``dist_reduce_fx="cat"``), drops repeated (text index, video index) pairs (the padded duplicates of a
    ``DistributedSampler``, first occurrence kept), rebuilds the full ``[num_texts, num_videos]`` matrix
    over the distinct sample indices and calls :func:`retrieval_metrics` once. Every text must have
    exactly one positive video and every pair must have been scored.

    Args:
        ks: Cut-offs of the recalls.
        directions: Subset of ``("t2v", "v2t")``.
        kwargs: Passed to ``torchmetrics.Metric`` (e.g. ``sync_on_compute``).

    ``compute`` returns ``{"t2v_R@1": tensor, ..., "v2t_MnR": tensor}`` (float64 scalars).
    """

    is_differentiable = False
    full_state_update = False

    def __init__(
        self, ks: tuple[int, ...] = (1, 5, 10), directions: tuple[str, ...] = ("t2v", "v2t"), **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.ks, self.directions = tuple(ks), tuple(directions)
        for name in ("scores", "text_index", "video_index", "target"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, scores: Tensor, text_index: Tensor, video_index: Tensor, target: Tensor) -> None:
        """Add scored pairs, either flat or as a block.

        Args:
            scores: ``[p]`` pair scores, or a block ``[b, v]`` (texts x videos).
            text_index: ``[p]`` dataset index of each pair's text (``[b]`` for a block).
            video_index: ``[p]`` dataset index of each pair's video (``[v]`` for a block).
            target: Bool, same shape as ``scores``: whether the pair matches.
        """
        scores, target = scores.detach(), torch.as_tensor(target, device=scores.device)
        if target.shape != scores.shape:
            raise ValueError(
                f"target shape {tuple(target.shape)} must equal scores shape {tuple(scores.shape)}"
            )
        if scores.ndim == 2:
            b, v = scores.shape
            text_index = as_index(text_index, "text_index", b).to(scores.device)[:, None].expand(b, v)
            video_index = as_index(video_index, "video_index", v).to(scores.device)[None, :].expand(b, v)
        elif scores.ndim == 1:
            text_index = as_index(text_index, "text_index", scores.shape[0]).to(scores.device)
            video_index = as_index(video_index, "video_index", scores.shape[0]).to(scores.device)
        else:
            raise ValueError(f"scores must be [pairs] or [texts, videos], got shape {tuple(scores.shape)}")
        self.scores.append(scores.reshape(-1).float())
        self.text_index.append(text_index.reshape(-1))
        self.video_index.append(video_index.reshape(-1))
        self.target.append(target.reshape(-1).bool())

    def _matrix(self) -> tuple[Tensor, Tensor]:
        dev = self.device
        scores = cat_state(self.scores, torch.float32, dev)
        texts = cat_state(self.text_index, torch.long, dev)
        videos = cat_state(self.video_index, torch.long, dev)
        target = cat_state(self.target, torch.bool, dev)
        if scores.numel() == 0:
            raise ValueError("RetrievalMetrics: no scored pairs to compute from (update was never called)")
        keep = first_occurrence(torch.stack([texts, videos], 1))
        scores, texts, videos, target = scores[keep], texts[keep], videos[keep], target[keep]
        text_ids, row = torch.unique(texts, return_inverse=True)
        video_ids, col = torch.unique(videos, return_inverse=True)
        matrix = torch.full((len(text_ids), len(video_ids)), float("nan"), device=dev)
        matrix[row, col] = scores
        missing = int(torch.isnan(matrix).sum())
        if missing:
            raise ValueError(
                f"RetrievalMetrics: {missing} of {matrix.numel()} (text, video) pairs were never scored "
                f"({len(text_ids)} texts x {len(video_ids)} videos); every text must be scored against every video"
            )
        positives = torch.zeros_like(matrix, dtype=torch.long)
        positives[row, col] = target.long()
        count = positives.sum(1)
        if (count != 1).any():
            bad = int(text_ids[(count != 1).nonzero()[0, 0]])
            raise ValueError(
                f"RetrievalMetrics: text index {bad} has {int(count[text_ids == bad][0])} positive videos; "
                "every text needs exactly one"
            )
        return matrix, positives.argmax(1)

    def compute(self) -> dict[str, Tensor]:
        """Metrics over every distinct pair seen on every rank."""
        matrix, text_to_video = self._matrix()
        out = retrieval_metrics(matrix, text_to_video, self.ks, self.directions)
        return {k: torch.tensor(v, dtype=torch.float64, device=self.device) for k, v in out.items()}
