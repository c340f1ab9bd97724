"""Text-video retrieval with the cross-encoder (MSRVTT, DiDeMo paragraph-to-video, LSMDC).

Training scores every video of the batch with every text (``B x B`` pairs, each video encoded once) with the
VTM head and minimises :func:`~violetv2.tasks.losses.bidirectional_contrastive_loss` (temperature 0.05).

Evaluation scores *every* text-video pair of the split through the cross encoder, as published: each unique
video is encoded once (video tokens cached by ``video_ids``; multi-clip tokens averaged), every text kept; at
the end of the epoch every rank scores its own videos against all texts (fusion batched ``pair_batch`` pairs
at a time) and the score columns are gathered. Score = sigmoid of the VTM logit (``eval_score="sigmoid"``, as
published). Several captions of one video are several texts with the same positive video. Metrics: R@1/5/10,
median and mean rank, text-to-video and video-to-text.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from ..data.batch import VideoTextBatch
from ..metrics import retrieval_metrics
from .downstream import DownstreamModule, VideoTokens
from .losses import bidirectional_contrastive_loss

__all__ = ["RetrievalModule", "gather_objects"]


def gather_objects(obj: Any) -> list[Any]:
    """``obj`` from every rank (a one-element list outside distributed runs)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [obj]
    out: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(out, obj)
    return out


class RetrievalModule(DownstreamModule):
    """Retrieval fine-tuning and all-pairs cross-encoder evaluation.

    Args:
        temperature: Temperature of the contrastive loss (published 0.05).
        loss_reduction: How the two loss directions combine: ``sum`` (published) or ``mean``.
        eval_score: Ranking score at evaluation: ``sigmoid`` of the VTM logit (published) or the raw ``logit``
            (same order, no fp32 saturation ties).
        pair_batch: Text-video pairs per fusion forward at evaluation.
        tokenizer: Tokenizer name or directory (special-token ids); ``None`` = bert-base-uncased ids.
        **kwargs: :class:`~violetv2.VioletModule` arguments (preset, config, lr, init_checkpoint, ...).
    """

    def __init__(
        self,
        temperature: float = 0.05,
        loss_reduction: Literal["sum", "mean"] = "sum",
        eval_score: Literal["sigmoid", "logit"] = "sigmoid",
        pair_batch: int = 64,
        tokenizer: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.update(vtm_head=True, mlm_head=False)
        kwargs.setdefault("mvm_heads", None)
        if pair_batch < 1:
            raise ValueError(f"pair_batch must be >= 1, got {pair_batch}")
        if eval_score not in ("sigmoid", "logit"):
            raise ValueError(f"eval_score must be 'sigmoid' or 'logit', got {eval_score!r}")
        super().__init__(tokenizer=tokenizer, **kwargs)
        self._reset_cache()

    # ------------------------------------------------------------------ scoring
    def pair_logits(self, video: VideoTokens, text_ids: Tensor, text_mask: Tensor, chunk: int = 0) -> Tensor:
        """``[n_video, n_text]`` raw VTM logits of every (video i, text j) pair, i outer and j inner.

        ``chunk`` > 0 fuses that many pairs at a time (evaluation); 0 fuses all at once (training).
        """
        n, m = len(video), text_ids.shape[0]
        pair = torch.arange(n * m, device=text_ids.device)
        step = chunk or n * m
        logits = []
        for block in pair.split(step):
            vi, ti = block // m, block % m
            fused = self.fuse(video.select(vi), text_ids[ti], text_mask[ti])
            logits.append(self.model.vtm_logits(fused))
        return torch.cat(logits).view(n, m)

    def score(self, logits: Tensor) -> Tensor:
        """Evaluation score of VTM logits (sigmoid as published, or the logits)."""
        return logits.sigmoid() if self.hparams.eval_score == "sigmoid" else logits

    # ------------------------------------------------------------------ training
    def training_step(self, batch: VideoTextBatch, batch_idx: int) -> Tensor:
        video = self.encode(batch)
        logits = self.pair_logits(video, self.rows(batch, "text_ids"), self.rows(batch, "text_mask"))
        out = bidirectional_contrastive_loss(logits, self.hparams.temperature, self.hparams.loss_reduction)
        b = len(video)
        self.log_dict({f"train/{k}": v for k, v in out.items() if k != "loss"}, batch_size=b)
        self.log("train/loss", out["loss"], batch_size=b, prog_bar=True)
        return out["loss"]

    # ------------------------------------------------------------------ evaluation
    def _reset_cache(self) -> None:
        self._videos: dict[str, Tensor] = {}
        self._texts: dict[int, tuple[Tensor, Tensor, str]] = {}
        self._video_meta: tuple[int, tuple[int, int]] | None = None

    def cache_batch(self, batch: VideoTextBatch) -> None:
        """Keep the batch's texts and encode its videos not seen yet in this epoch."""
        video_ids = self.cache_texts(batch)
        new = [k for k, v in enumerate(video_ids) if v not in self._videos and v not in video_ids[:k]]
        if not new:
            return
        n = batch.num_clips
        rows = torch.tensor([k * n + c for k in new for c in range(n)], device=batch.video.device)
        sub = VideoTextBatch(batch.video[rows], batch.text_ids[rows], batch.text_mask[rows], num_clips=n)
        self.cache_videos([video_ids[k] for k in new], self.encode(sub))

    def cache_texts(self, batch: VideoTextBatch) -> list[str]:
        """Keep every text of the batch (by sample index) with its video id; returns the video ids."""
        video_ids = list(self.rows(batch, "video_ids"))
        if len(video_ids) != len(batch) // batch.num_clips:
            raise ValueError("retrieval evaluation needs batch.video_ids (one per sample)")
        ids, mask = self.rows(batch, "text_ids"), self.rows(batch, "text_mask")
        for k, i in enumerate(self.sample_index(batch).tolist()):
            self._texts.setdefault(int(i), (ids[k].cpu(), mask[k].cpu(), video_ids[k]))
        return video_ids

    def cache_videos(self, video_ids: list[str], video: VideoTokens) -> None:
        """Keep encoded videos (one token row per id) for the end-of-epoch scoring."""
        if len(video_ids) != len(video):
            raise ValueError(f"{len(video_ids)} video ids for {len(video)} encoded videos")
        self._video_meta = (video.frames, video.grid)
        for name, tokens in zip(video_ids, video.tokens):
            self._videos.setdefault(name, tokens)

    def all_pair_scores(self) -> tuple[Tensor, list[str], Tensor]:
        """Score every cached text against every video of every rank.

        Returns:
            ``(scores [num_texts, num_videos], video ids (columns), positive [num_texts] column index)``,
            texts ordered by sample index, identical on every rank.
        """
        texts: dict[int, tuple[Tensor, Tensor, str]] = {}
        for part in gather_objects(self._texts):
            for k, v in part.items():
                texts.setdefault(k, v)
        order = sorted(texts)
        device = next(self.model.parameters()).device
        ids = torch.stack([texts[k][0] for k in order]).to(device)
        mask = torch.stack([texts[k][1] for k in order]).to(device)
        names = self._own_videos()
        columns = torch.empty(len(order), 0, device=device)
        if names:
            frames, grid = self._video_meta
            video = VideoTokens(torch.stack([self._videos[v] for v in names]), frames, grid)
            columns = self.score(self.pair_logits(video, ids, mask, chunk=self.hparams.pair_batch)).t()
        gathered: dict[str, Tensor] = {}
        for part_names, part_scores in gather_objects((names, columns.float().cpu())):
            for j, name in enumerate(part_names):
                gathered.setdefault(name, part_scores[:, j])
        video_ids = sorted(gathered)
        scores = torch.stack([gathered[v] for v in video_ids], dim=1)
        column = {v: j for j, v in enumerate(video_ids)}
        missing = sorted({texts[k][2] for k in order} - set(column))
        if missing:
            raise ValueError(f"texts refer to videos never seen in this split: {missing[:5]}")
        positive = torch.tensor([column[texts[k][2]] for k in order])
        return scores, video_ids, positive

    def _own_videos(self) -> list[str]:
        """The cached videos this rank scores: each video by the lowest rank that cached it."""
        owner: dict[str, int] = {}
        for r, part in enumerate(gather_objects(list(self._videos))):
            for name in part:
                owner.setdefault(name, r)
        dist = torch.distributed
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        return [name for name in self._videos if owner[name] == rank]

    def _score_epoch(self, stage: str) -> None:
        if sum(gather_objects(len(self._texts))) == 0:
            return
        scores, _, positive = self.all_pair_scores()
        self._reset_cache()
        values = retrieval_metrics(scores, positive)  # identical on every rank: no further sync
        self.log_dict({f"{stage}/{k}": float(v) for k, v in values.items()})

    def _evaluate(self, batch: VideoTextBatch, stage: str) -> None:
        self.cache_batch(batch)  # scored at the epoch's end

    def on_validation_epoch_start(self) -> None:
        self._reset_cache()

    def on_validation_epoch_end(self) -> None:
        self._score_epoch("val")

    def on_test_epoch_start(self) -> None:
        self._reset_cache()

    def on_test_epoch_end(self) -> None:
        self._score_epoch("test")

    @torch.no_grad()
    def predict_step(self, batch: VideoTextBatch, batch_idx: int) -> list[dict[str, Any]]:
        """Matching score of every (video, text) row: ``{id, prediction: video id, score}``."""
        video = self.encode(batch)
        ids, mask = self.rows(batch, "text_ids"), self.rows(batch, "text_mask")
        scores = self.score(self.model.vtm_logits(self.fuse(video, ids, mask)))
        sample_ids = list(self.rows(batch, "sample_ids")) or [str(i) for i in range(len(video))]
        video_ids = list(self.rows(batch, "video_ids")) or sample_ids
        return [
            {"id": s, "prediction": v, "score": float(x)} for s, v, x in zip(sample_ids, video_ids, scores)
        ]
