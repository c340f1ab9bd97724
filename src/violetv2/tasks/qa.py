"""Open-ended QA and fill-in-the-blank (TGIF-Frame, MSRVTT-QA, MSVD-QA, LSMDC-FiB).

``head="mlm"`` (published, ``VIOLET_QAOE_LSMDC``): the MLM head at the prompt's ``[MASK]``
(``[CLS] question answer : [MASK] [SEP]``, or the blank of a FiB sentence) predicts the answer over the *whole*
vocabulary. Accuracy is over every question: answers that are not one vocabulary entry carry the label -100
and always count as wrong; top-5 accuracy is logged beside top-1.

``head="classifier"`` (``VIOLET_QAOE``): Dropout-Linear(d, 2d)-ReLU-Linear(2d, ``num_answers``) on the text
``[CLS]`` of the question, over an answer vocabulary built from the training answers (``batch.label`` = the
answer's class, -100 for answers outside it).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.batch import VideoTextBatch
from .downstream import DownstreamModule, VideoTokens, mask_positions
from .losses import IGNORE_INDEX

__all__ = ["OpenQAModule", "answer_loss"]


def answer_loss(logits: Tensor, target: Tensor) -> dict[str, Tensor]:
    """Cross-entropy over the answers with a known target (``-100`` skipped) and the top-1 accuracy over all.

    With no producible answer in the batch the loss is 0 with a graph (not NaN).
    """
    labelled = target != IGNORE_INDEX
    loss = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="sum")
    acc = ((logits.detach().argmax(1) == target) & labelled).float().mean()
    return {"loss": loss / labelled.sum().clamp_min(1), "acc": acc}


class OpenQAModule(DownstreamModule):
    """Open-ended QA / fill-in-the-blank with the MLM head, or with an answer classifier.

    Args:
        head: ``mlm`` (answer = arg-max over the vocabulary at the ``[MASK]``, published) or ``classifier``.
        num_answers: Classes of the answer classifier (``head="classifier"`` only; published sizes 1540 /
            1500 / 1000 / 908, derived from the training answers by the DataModule).
        answer_vocab: The classifier's answers in class order (optional: predictions are then strings).
        tokenizer: Tokenizer name or directory (``[MASK]`` id; MLM predictions decoded to words).
        task_token: Insert the task token (row 2, ``oe``, as the release's QA / FiB agents).
        **kwargs: :class:`~violetv2.VioletModule` arguments (preset, config, lr, init_checkpoint, ...).
    """

    task_row = "oe"
    accuracies = ("acc", "acc_top5")

    def __init__(
        self,
        head: Literal["mlm", "classifier"] = "mlm",
        num_answers: int | None = None,
        answer_vocab: list[str] | None = None,
        tokenizer: str | None = None,
        task_token: bool = False,
        **kwargs: Any,
    ) -> None:
        if head == "mlm":
            if num_answers is not None:
                raise ValueError(
                    "num_answers is for head='classifier'; the MLM head answers over the vocabulary"
                )
            kwargs.update(vtm_head=False, mlm_head=True, task_embedding=True, num_answers=None)
        elif head == "classifier":
            if num_answers is None or num_answers < 1:
                raise ValueError(f"head='classifier' needs num_answers >= 1, got {num_answers}")
            if answer_vocab is not None and len(answer_vocab) != num_answers:
                raise ValueError(f"answer_vocab has {len(answer_vocab)} entries, num_answers={num_answers}")
            kwargs.update(vtm_head=False, mlm_head=False, num_answers=num_answers)
            kwargs.setdefault("task_embedding", False)
        else:
            raise ValueError(f"head must be 'mlm' or 'classifier', got {head!r}")
        kwargs.setdefault("mvm_heads", None)
        if task_token:
            kwargs["task_embedding"] = True
        super().__init__(tokenizer=tokenizer, task_token=task_token, **kwargs)

    # ------------------------------------------------------------------ forward
    def mask_logits(self, video: VideoTokens, text_ids: Tensor, text_mask: Tensor) -> tuple[Tensor, Tensor]:
        """``([b, vocab] MLM logits at the [MASK], [b] its text position)`` (MLM head).

        A fill-in-the-blank whose blank was truncated away has no ``[MASK]``: position -1, logits read at
        the ``[CLS]``, and its target becomes -100 (the question counts as wrong, as in the release).
        """
        pos = mask_positions(text_ids, self.special.mask, allow_missing=True)
        fused = self.fuse(video, text_ids, text_mask)
        hidden = fused.text[torch.arange(text_ids.shape[0], device=pos.device), pos.clamp_min(0)]
        return self.model.mlm_head(hidden), pos

    def class_logits(self, video: VideoTokens, text_ids: Tensor, text_mask: Tensor) -> Tensor:
        """``[b, num_answers]`` classifier logits from the text ``[CLS]``."""
        return self.model.answer_logits(self.fuse(video, text_ids, text_mask))

    def forward_batch(self, batch: VideoTextBatch) -> tuple[Tensor, Tensor | None]:
        """``(logits [b, classes], target [b])``: classes = vocabulary (MLM) or answers (classifier); the
        target is ``-100`` where the answer cannot be produced, ``None`` when the batch has no answers."""
        video = self.encode(batch)
        ids, mask = self.rows(batch, "text_ids"), self.rows(batch, "text_mask")
        if self.hparams.head == "classifier":
            return self.class_logits(video, ids, mask), self.rows(batch, "label")
        logits, pos = self.mask_logits(video, ids, mask)
        return logits, self.labels_at(self.rows(batch, "answer_ids"), pos)  # -100 where no [MASK] is left

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: VideoTextBatch, batch_idx: int) -> Tensor:
        logits, target = self.forward_batch(batch)
        if target is None:
            raise ValueError("batch lacks answers (answer_ids for the MLM head, label for the classifier)")
        out = answer_loss(logits, target)
        return self.log_train(out, logits.shape[0])

    def _evaluate(self, batch: VideoTextBatch, stage: str) -> None:
        logits, target = self.forward_batch(batch)
        if target is None:
            raise ValueError("batch lacks answers (answer_ids for the MLM head, label for the classifier)")
        index = self.sample_index(batch)
        top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hit5 = (top5 == target[:, None]).any(1) & (target != IGNORE_INDEX)
        self.log_accuracy(stage, "acc", logits.argmax(1), target, index)
        self.log_accuracy(stage, "acc_top5", torch.where(hit5, target, -1), target, index)

    @torch.no_grad()
    def predict_step(self, batch: VideoTextBatch, batch_idx: int) -> list[dict[str, Any]]:
        """``{id, prediction: answer, score: its softmax probability}`` per question."""
        logits, _ = self.forward_batch(batch)
        score, pred = logits.softmax(1).max(1)
        ids = self.rows(batch, "sample_ids")
        return [
            {"id": ids[i] if ids else str(i), "prediction": self.answer_text(int(p)), "score": float(s)}
            for i, (p, s) in enumerate(zip(pred, score))
        ]

    def answer_text(self, k: int) -> str | int:
        """A predicted class as text: the vocabulary token (MLM head, with a tokenizer) or the answer string
        (classifier with ``answer_vocab``); the id itself otherwise."""
        if self.hparams.head == "classifier":
            vocab = self.hparams.answer_vocab
            return vocab[k] if vocab else k
        tok = self.tokenizer
        return tok.convert_ids_to_tokens(k) if tok is not None else k
