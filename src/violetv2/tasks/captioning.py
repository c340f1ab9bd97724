"""Video captioning (MSRVTT, MSVD) with the MLM head under the seq2seq mask (the release's ``VIOLET_Captioning``).

Training (teacher forced): every caption token that is neither ``[PAD]`` nor already ``[MASK]`` -- ``[CLS]``
and ``[SEP]`` included -- becomes ``[MASK]`` with probability 0.15 (label = the original id); one forward
with the seq2seq mask (video rows see the video; text rows see the video and the text causally); cross-entropy
of the MLM head at the masked positions.

Generation (:func:`greedy_decode`, the published loop): start from ``[CLS]``; each step appends one ``[MASK]``
to the tokens so far, runs the cross encoder and takes the arg-max of the MLM logits at that ``[MASK]``; a
sample that has produced ``[SEP]`` gets ``[PAD]`` from then on; at most ``max_length - 1`` steps, and when the
limit is reached the last token of unfinished samples is overwritten with ``[SEP]``. Confidence = mean
log-probability of the chosen tokens over a sample's steps (the ``[SEP]`` step and an overwritten last step
included). :func:`beam_search` is the option (``beam_size > 1``; ``beam_size=1`` equals the greedy loop).
The video part of the cross encoder is computed once per video (:mod:`violetv2.models.decoding`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..data.batch import VideoTextBatch
from ..metrics import CaptionMetrics
from ..models.decoding import PrefixCache, fuse_text, prefix_cache
from ..models.violet import VioletModel
from .downstream import DownstreamModule, VideoTokens
from .losses import IGNORE_INDEX, mlm_loss

__all__ = ["CaptioningModule", "DecodeOutput", "beam_search", "greedy_decode", "mask_caption"]


def mask_caption(
    ids: Tensor,
    *,
    mask_token_id: int,
    pad_token_id: int,
    prob: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """The release's captioning corruption: each token that is not ``[PAD]`` / ``[MASK]`` -> ``[MASK]`` with
    probability ``prob`` (``[CLS]`` / ``[SEP]`` included, no forced pick).

    Returns:
        ``(masked ids, labels)``: labels are the original ids at masked positions, -100 elsewhere.
    """
    if not 0.0 < prob <= 1.0:
        raise ValueError(f"prob must be in (0, 1], got {prob}")
    where = generator.device if generator is not None else ids.device
    noise = torch.rand(ids.shape, generator=generator, device=where).to(ids.device)
    selected = (ids != pad_token_id) & (ids != mask_token_id) & (noise < prob)
    masked = torch.where(selected, torch.full_like(ids, mask_token_id), ids)
    return masked, torch.where(selected, ids, torch.full_like(ids, IGNORE_INDEX))


@dataclass
class DecodeOutput:
    """Result of :func:`greedy_decode` / :func:`beam_search`.

    Attributes:
        ids: ``[b, max_length]`` token ids, ``[CLS]`` first, ``[PAD]``-filled after the ``[SEP]``.
        score: ``[b]`` mean log-probability of the chosen tokens (the confidence).
        step_logits: ``[b, steps, vocab]`` logits at the appended ``[MASK]`` per step (greedy, when asked).
    """

    ids: Tensor
    score: Tensor
    step_logits: Tensor | None = None


class _Stepper:
    """One decoding step: MLM logits at a ``[MASK]`` appended to the tokens so far (prefix cached)."""

    def __init__(self, model: VioletModel, cache: PrefixCache, mask_token_id: int) -> None:
        self.model, self.cache, self.mask_id = model, cache, mask_token_id

    def __call__(self, ids: Tensor) -> Tensor:
        text = torch.cat([ids, torch.full_like(ids[:, :1], self.mask_id)], dim=1)
        hidden = fuse_text(self.model.backbone.fusion, self.cache, self.model.backbone.text(text))
        return self.model.mlm_head(hidden[:, -1]).float()


def _stepper(
    model: VioletModel, video: VideoTokens, task: Tensor | None, mask_id: int, repeat: int = 1
) -> _Stepper:
    if model.mlm_head is None:
        raise ValueError("caption decoding needs a model with an MLM head")
    prefix = model.backbone.prefix_tokens(video.tokens, task)
    cache = prefix_cache(model.backbone.fusion, prefix)
    if repeat > 1:
        cache = [(k.repeat_interleave(repeat, 0), v.repeat_interleave(repeat, 0)) for k, v in cache]
    return _Stepper(model, cache, mask_id)


def _check_length(max_length: int) -> None:
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2 ([CLS] and [SEP]), got {max_length}")


@torch.no_grad()
def greedy_decode(
    model: VioletModel,
    video: VideoTokens,
    special: dict[str, int],
    *,
    max_length: int = 20,
    task_embedding: Tensor | None = None,
    return_step_logits: bool = False,
) -> DecodeOutput:
    """The published greedy captioning loop (module docstring).

    Args:
        model: Model with an MLM head (eval mode).
        video: Encoded videos, one per caption.
        special: Ids of ``cls``, ``sep``, ``pad`` and ``mask``.
        max_length: Caption length limit including ``[CLS]`` and ``[SEP]`` (published 20).
        task_embedding: ``[d]`` task token (captioning row 3), or ``None``.
        return_step_logits: Also return the logits of every step.
    """
    _check_length(max_length)
    step = _stepper(model, video, task_embedding, special["mask"])
    b, device = len(video), video.tokens.device
    ids = torch.full((b, 1), special["cls"], dtype=torch.long, device=device)
    finished = torch.zeros(b, dtype=torch.bool, device=device)
    total = torch.zeros(b, device=device)
    count = torch.zeros(b, device=device)
    steps = []
    while ids.shape[1] < max_length:
        logits = step(ids)
        if return_step_logits:
            steps.append(logits)
        logp, token = logits.log_softmax(-1).max(-1)
        total += torch.where(finished, 0.0, logp)
        count += (~finished).float()
        token = torch.where(finished, special["pad"], token)
        ids = torch.cat([ids, token[:, None]], dim=1)
        finished |= token == special["sep"]
        if bool(finished.all()):
            break
    if ids.shape[1] == max_length:  # limit reached: unfinished samples end with a forced [SEP]
        ids[:, -1] = torch.where(finished, ids[:, -1], special["sep"])
    ids = _pad_to(ids, max_length, special["pad"])
    logits = torch.stack(steps, 1) if return_step_logits else None
    return DecodeOutput(ids, total / count.clamp_min(1), logits)


@torch.no_grad()
def beam_search(
    model: VioletModel,
    video: VideoTokens,
    special: dict[str, int],
    *,
    beam_size: int = 3,
    max_length: int = 20,
    task_embedding: Tensor | None = None,
) -> DecodeOutput:
    """Beam search with the same step as :func:`greedy_decode`.

    Hypotheses are ranked by their summed log-probability while searching; a finished hypothesis (``[SEP]``)
    continues with ``[PAD]`` at no cost. At the end, unfinished hypotheses get the forced ``[SEP]`` and the
    hypothesis with the best mean log-probability is returned with that mean as its score.
    """
    _check_length(max_length)
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    k = beam_size
    step = _stepper(model, video, task_embedding, special["mask"], repeat=k)
    b, device = len(video), video.tokens.device
    ids = torch.full((b * k, 1), special["cls"], dtype=torch.long, device=device)
    cum = torch.full((b, k), float("-inf"), device=device)
    cum[:, 0] = 0.0  # one live hypothesis at the start: no duplicate beams
    length = torch.zeros(b, k, device=device)
    finished = torch.zeros(b, k, dtype=torch.bool, device=device)
    rows = torch.arange(b, device=device)[:, None]
    while ids.shape[1] < max_length:
        logp = step(ids).log_softmax(-1).view(b, k, -1)
        vocab = logp.shape[-1]
        done = torch.full((vocab,), float("-inf"), device=device)
        done[special["pad"]] = 0.0
        logp = torch.where(finished[..., None], done, logp)
        top, flat = (cum[..., None] + logp).view(b, k * vocab).topk(k, dim=1)
        beam, token = flat // vocab, flat % vocab
        ids = torch.cat([ids.view(b, k, -1)[rows, beam], token[..., None]], dim=2).view(b * k, -1)
        was_done = finished.gather(1, beam)
        length = length.gather(1, beam) + (~was_done).float()
        finished = was_done | (token == special["sep"])
        cum = top
        if bool(finished.all()):
            break
    ids = ids.view(b, k, -1)
    if ids.shape[2] == max_length:
        ids[..., -1] = torch.where(finished, ids[..., -1], special["sep"])
    mean = cum / length.clamp_min(1)
    best = mean.argmax(1)
    out = ids[torch.arange(b, device=device), best]
    return DecodeOutput(_pad_to(out, max_length, special["pad"]), mean[torch.arange(b, device=device), best])


def _pad_to(ids: Tensor, length: int, pad: int) -> Tensor:
    if ids.shape[1] >= length:
        return ids
    return torch.cat([ids, ids.new_full((ids.shape[0], length - ids.shape[1]), pad)], dim=1)


class CaptioningModule(DownstreamModule):
    """Masked-token seq2seq captioning with greedy (published) or beam-search generation.

    Args:
        mask_prob: Probability that a caption token becomes ``[MASK]`` in training (published 0.15).
        max_length: Generated caption length limit, ``[CLS]`` and ``[SEP]`` included (published 20).
        beam_size: 1 = the published greedy loop; more = beam search.
        meteor: Report METEOR (needs Java and the METEOR 1.5 jar); ``None`` = when available.
        tokenizer: Tokenizer name or directory (special ids; needed to write captions as text).
        task_token: Insert the task token (row 3, ``cap``), visible to every row like the video.
        **kwargs: :class:`~violetv2.VioletModule` arguments (preset, config, lr, init_checkpoint, ...).
    """

    task_row = "cap"

    def __init__(
        self,
        mask_prob: float = 0.15,
        max_length: int = 20,
        beam_size: int = 1,
        meteor: bool | None = None,
        tokenizer: str | None = None,
        task_token: bool = False,
        **kwargs: Any,
    ) -> None:
        _check_length(max_length)
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        kwargs.update(vtm_head=False, mlm_head=True, task_embedding=True)
        kwargs.setdefault("mvm_heads", None)
        super().__init__(tokenizer=tokenizer, task_token=task_token, **kwargs)
        self.caption_metrics = nn.ModuleDict(
            {stage: CaptionMetrics(meteor=meteor) for stage in ("val", "test")}
        )

    # ------------------------------------------------------------------ training
    def teacher_forced_logits(self, video: VideoTokens, text_ids: Tensor, text_mask: Tensor) -> Tensor:
        """``[b, l, vocab]`` MLM logits at every text position under the seq2seq mask."""
        return self.model.mlm_logits(self.fuse(video, text_ids, text_mask, mode="seq2seq"))

    def training_step(self, batch: VideoTextBatch, batch_idx: int) -> Tensor:
        special = self.special.ids
        ids = self.rows(batch, "text_ids")
        masked, labels = mask_caption(
            ids, mask_token_id=special["mask"], pad_token_id=special["pad"], prob=self.hparams.mask_prob
        )
        logits = self.teacher_forced_logits(self.encode(batch), masked, self.rows(batch, "text_mask"))
        return self.log_train(mlm_loss(logits, labels), ids.shape[0])

    # ------------------------------------------------------------------ generation
    def generate(self, video: VideoTokens, return_step_logits: bool = False) -> DecodeOutput:
        """Captions for encoded videos (greedy when ``beam_size == 1``)."""
        kw = {"max_length": self.hparams.max_length, "task_embedding": self.task_vector()}
        if self.hparams.beam_size == 1:
            return greedy_decode(
                self.model, video, self.special.ids, return_step_logits=return_step_logits, **kw
            )
        return beam_search(self.model, video, self.special.ids, beam_size=self.hparams.beam_size, **kw)

    def decode_text(self, ids: Tensor) -> list[str]:
        """Generated ids -> caption strings (special tokens dropped)."""
        if self.tokenizer is None:
            raise ValueError("CaptioningModule needs `tokenizer` to write captions as text")
        return self.tokenizer.batch_decode(ids.tolist(), skip_special_tokens=True)

    def caption_batch(self, batch: VideoTextBatch) -> tuple[list[str], Tensor]:
        """``(captions, confidence [b])`` for the videos of a batch."""
        out = self.generate(self.encode(batch))
        return self.decode_text(out.ids), out.score

    def _evaluate(self, batch: VideoTextBatch, stage: str) -> None:
        self.require(batch, "answers")
        captions, _ = self.caption_batch(batch)
        refs = [r if isinstance(r, list) else [r] for r in self.rows(batch, "answers")]
        self.caption_metrics[stage].update(captions, refs, self.sample_index(batch))

    def _log_metrics(self, stage: str) -> None:
        metric = self.caption_metrics[stage]
        if not metric.update_called:
            return
        values = metric.compute()
        metric.reset()
        self.log_dict({f"{stage}/{k}": float(v) for k, v in values.items() if v is not None})

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    @torch.no_grad()
    def predict_step(self, batch: VideoTextBatch, batch_idx: int) -> list[dict[str, Any]]:
        """One ``{id: video id, prediction: caption, score: confidence}`` per distinct video of the batch."""
        captions, score = self.caption_batch(batch)
        video_ids = list(self.rows(batch, "video_ids")) or list(self.rows(batch, "sample_ids"))
        video_ids = video_ids or [str(i) for i in range(len(captions))]
        out, seen = [], set()
        for vid, cap, s in zip(video_ids, captions, score):
            if vid not in seen:
                seen.add(vid)
                out.append({"id": vid, "prediction": cap, "score": float(s)})
        return out
