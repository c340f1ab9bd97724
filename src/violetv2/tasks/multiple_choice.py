"""Multiple choice, both published formulations.

- :class:`MultipleChoiceModule` (MSRVTT-MC, LSMDC-MC; the release's ``VIOLET_QAMC``): every option is its own
  text (``question + " " + option``), scored with the VTM head at the text ``[CLS]``; logits ``[b, o]``,
  cross-entropy over the options, arg-max. Options whose mask is all zero (padding) score ``-inf``.
- :class:`PromptChoiceModule` (TGIF-Action / TGIF-Transition; ``VIOLET_QAMC_MLM_Head_GEN``): all options in one
  prompt ending in ``[MASK] [SEP]``; the MLM head at the ``[MASK]`` predicts the option's digit (``"0"`` ...
  ``"4"``). Training: cross-entropy at the ``[MASK]`` over the whole vocabulary, as the release. Prediction:
  arg-max of the digit logits (``option_score="argmax"``, default), or the release's score, the digit logits
  divided by their signed sum (``"release_sum"``: picks the smallest logit whenever the sum is negative).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from ..data.batch import VideoTextBatch
from .downstream import DownstreamModule, VideoTokens, mask_positions
from .losses import IGNORE_INDEX, mlm_loss, multiple_choice_loss

__all__ = ["MultipleChoiceModule", "PromptChoiceModule", "release_option_score"]

BERT_DIGITS = tuple(range(1014, 1024))  # "0" .. "9" in bert-base-uncased


class MultipleChoiceModule(DownstreamModule):
    """Multiple choice with the VTM head over one (video, question + option) text per option.

    Args:
        temperature: Divides the option logits in the loss (1.0: none, as published).
        tokenizer: Tokenizer name or directory; ``None`` = bert-base-uncased ids.
        **kwargs: :class:`~violetv2.VioletModule` arguments (preset, config, lr, init_checkpoint, ...).
    """

    accuracies = ("acc",)

    def __init__(self, temperature: float = 1.0, tokenizer: str | None = None, **kwargs: Any) -> None:
        kwargs.update(vtm_head=True, mlm_head=False)
        kwargs.setdefault("mvm_heads", None)
        super().__init__(tokenizer=tokenizer, **kwargs)

    def option_logits(self, video: VideoTokens, option_ids: Tensor, option_mask: Tensor) -> Tensor:
        """``[b, o]`` VTM logits of every option (``-inf`` for all-padding options); video encoded once."""
        b, o, _ = option_ids.shape
        if len(video) != b:
            raise ValueError(f"{len(video)} videos for {b} rows of options")
        rows = torch.arange(b, device=option_ids.device).repeat_interleave(o)
        fused = self.fuse(video.select(rows), option_ids.flatten(0, 1), option_mask.flatten(0, 1))
        logits = self.model.vtm_logits(fused).view(b, o)
        return logits.masked_fill(option_mask.sum(-1) == 0, float("-inf"))

    def forward_batch(self, batch: VideoTextBatch) -> Tensor:
        """``[b, o]`` option logits of a batch."""
        self.require(batch, "option_ids", "option_mask")
        return self.option_logits(
            self.encode(batch), self.rows(batch, "option_ids"), self.rows(batch, "option_mask")
        )

    def training_step(self, batch: VideoTextBatch, batch_idx: int) -> Tensor:
        self.require(batch, "label")
        logits = self.forward_batch(batch)
        out = multiple_choice_loss(logits, self.rows(batch, "label"), self.hparams.temperature)
        return self.log_train(out, logits.shape[0])

    def _evaluate(self, batch: VideoTextBatch, stage: str) -> None:
        self.require(batch, "label")
        logits = self.forward_batch(batch)
        self.log_accuracy(stage, "acc", logits.argmax(1), self.rows(batch, "label"), self.sample_index(batch))

    @torch.no_grad()
    def predict_step(self, batch: VideoTextBatch, batch_idx: int) -> list[dict[str, Any]]:
        """``{id, prediction: option index, score: its softmax probability}`` per question."""
        probs = self.forward_batch(batch).softmax(1)
        return _choice_records(self.rows(batch, "sample_ids"), probs)


def release_option_score(option_logits: Tensor) -> Tensor:
    """The release's TGIF evaluation score: the option logits divided by their (signed) sum."""
    return option_logits / option_logits.sum(-1, keepdim=True)


class PromptChoiceModule(DownstreamModule):
    """Multiple choice with the options in the prompt, answered by the MLM head at the ``[MASK]``.

    Args:
        num_options: Options per question (5 in TGIF-Action / Transition); their digits ``"0"``... are the
            candidate answers.
        option_score: ``argmax`` of the digit logits (default, correct), or ``release_sum``: the release's
            logits divided by their signed sum (selectable for reproducing published numbers).
        tokenizer: Tokenizer name or directory (its ``[MASK]`` and digit ids); ``None`` = bert-base-uncased.
        task_token: Insert the task token (row 0, ``vtm``, the row the release's TGIF agent ends up using).
        **kwargs: :class:`~violetv2.VioletModule` arguments (preset, config, lr, init_checkpoint, ...).
    """

    task_row = "vtm"
    accuracies = ("acc",)

    def __init__(
        self,
        num_options: int = 5,
        option_score: Literal["argmax", "release_sum"] = "argmax",
        tokenizer: str | None = None,
        task_token: bool = False,
        **kwargs: Any,
    ) -> None:
        if option_score not in ("argmax", "release_sum"):
            raise ValueError(f"option_score must be 'argmax' or 'release_sum', got {option_score!r}")
        if not 1 <= num_options <= 10:
            raise ValueError(f"num_options must be in 1..10 (one digit each), got {num_options}")
        kwargs.update(vtm_head=False, mlm_head=True, task_embedding=True)
        kwargs.setdefault("mvm_heads", None)
        super().__init__(tokenizer=tokenizer, task_token=task_token, **kwargs)
        self._digits: list[int] | None = None

    @property
    def digit_ids(self) -> list[int]:
        """Vocabulary ids of ``"0"`` .. ``str(num_options - 1)``."""
        if self._digits is None:
            n = self.hparams.num_options
            if self.tokenizer is None:
                self._digits = list(BERT_DIGITS[:n])
            else:
                self._digits = _digit_ids(self.tokenizer, n, self.hparams.tokenizer)
        return self._digits

    def mask_logits(self, video: VideoTokens, text_ids: Tensor, text_mask: Tensor) -> tuple[Tensor, Tensor]:
        """``([b, vocab] MLM logits at the [MASK], [b] text position of the [MASK])``."""
        pos = mask_positions(text_ids, self.special.mask)
        fused = self.fuse(video, text_ids, text_mask)
        hidden = fused.text[torch.arange(text_ids.shape[0], device=pos.device), pos]
        return self.model.mlm_head(hidden), pos

    def option_scores(self, mask_logits: Tensor) -> tuple[Tensor, Tensor]:
        """``(digit logits [b, o], prediction score [b, o])`` under ``option_score``."""
        logits = mask_logits[:, self.digit_ids]
        score = release_option_score(logits) if self.hparams.option_score == "release_sum" else logits
        return logits, score

    def targets(self, batch: VideoTextBatch, pos: Tensor) -> tuple[Tensor, Tensor]:
        """``(vocabulary target at the [MASK] [b], option label [b])``; ``-100`` where unknown."""
        label = self.rows(batch, "label")
        answer = self.labels_at(self.rows(batch, "answer_ids"), pos)
        digits = torch.tensor(self.digit_ids, device=pos.device)
        if answer is None and label is None:
            raise ValueError("batch lacks both label and answer_ids: nothing to train or score against")
        if answer is None:
            answer = torch.where(label >= 0, digits[label.clamp_min(0)], IGNORE_INDEX)
        if label is None:
            hit = answer[:, None] == digits[None]
            label = torch.where(hit.any(1), hit.int().argmax(1), IGNORE_INDEX)
        return answer, label

    def forward_batch(self, batch: VideoTextBatch) -> tuple[Tensor, Tensor]:
        video = self.encode(batch)
        return self.mask_logits(video, self.rows(batch, "text_ids"), self.rows(batch, "text_mask"))

    def training_step(self, batch: VideoTextBatch, batch_idx: int) -> Tensor:
        logits, pos = self.forward_batch(batch)
        answer, _ = self.targets(batch, pos)
        out = mlm_loss(logits, answer)
        return self.log_train(out, logits.shape[0])

    def _evaluate(self, batch: VideoTextBatch, stage: str) -> None:
        logits, pos = self.forward_batch(batch)
        _, label = self.targets(batch, pos)
        _, score = self.option_scores(logits)
        self.log_accuracy(stage, "acc", score.argmax(1), label, self.sample_index(batch))

    @torch.no_grad()
    def predict_step(self, batch: VideoTextBatch, batch_idx: int) -> list[dict[str, Any]]:
        """``{id, prediction: option index, score}`` per question (score: softmax over the option logits)."""
        logits, _ = self.forward_batch(batch)
        option_logits, score = self.option_scores(logits)
        pred = score.argmax(1)
        probs = option_logits.softmax(1)
        ids = self.rows(batch, "sample_ids")
        return [
            {"id": _sample_id(ids, i), "prediction": int(p), "score": float(probs[i, p])}
            for i, p in enumerate(pred)
        ]


def _digit_ids(tokenizer: Any, n: int, name: str) -> list[int]:
    ids = tokenizer.convert_tokens_to_ids([str(i) for i in range(n)])
    unk = tokenizer.unk_token_id
    bad = [str(i) for i, t in enumerate(ids) if t is None or t == unk]
    if bad:
        raise ValueError(f"tokenizer {name!r} has no single token for the option digit(s) {bad}")
    return list(ids)


def _sample_id(ids: list[str] | None, i: int) -> str:
    return ids[i] if ids else str(i)


def _choice_records(ids: list[str] | None, probs: Tensor) -> list[dict[str, Any]]:
    score, pred = probs.max(1)
    return [
        {"id": _sample_id(ids, i), "prediction": int(p), "score": float(s)}
        for i, (p, s) in enumerate(zip(pred, score))
    ]
