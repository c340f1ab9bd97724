"""Captioning metrics over the whole test set: BLEU-4, ROUGE-L, CIDEr-D, and METEOR where Java is present."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torchmetrics import Metric

from ._state import as_index, cat_state, first_occurrence
from .caption_scores import bleu, cider_d, rouge_l
from .meteor import find_java, find_meteor_jar, meteor_score
from .ptb import ptb_tokenize

__all__ = ["CaptionMetrics", "caption_scores", "tokenize_corpus"]

log = logging.getLogger(__name__)


def _split(flat: list[str], counts: Sequence[int]) -> list[list[str]]:
    out, pos = [], 0
    for n in counts:
        out.append(flat[pos : pos + n])
        pos += n
    return out


def tokenize_corpus(
    predictions: Sequence[str], references: Sequence[Sequence[str]]
) -> tuple[list[str], list[list[str]]]:
    """PTB-tokenise predictions and references the way pycocoevalcap does (each set in one pass, in order)."""
    flat = ptb_tokenize([r for refs in references for r in refs])
    return ptb_tokenize(predictions), _split(flat, [len(refs) for refs in references])


def caption_scores(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    *,
    tokenize: bool = True,
    meteor: bool = False,
    meteor_jar: str | None = None,
) -> dict[str, float | None]:
    """BLEU-1..4, ROUGE-L, CIDEr-D (and METEOR) of a whole corpus, on pycocoevalcap's scale.

    Args:
        predictions: One generated caption per sample.
        references: The reference captions of each sample.
        tokenize: PTB-tokenise both first (:func:`ptb_tokenize`), as the COCO evaluation does; ``False``
            when they are already tokenised.
        meteor: Also compute METEOR (``None`` with a warning when Java or the jar is missing).
        meteor_jar: The METEOR 1.5 jar (see :func:`violetv2.metrics.meteor.find_meteor_jar`).

    Returns:
        ``{"BLEU-1": ..., "BLEU-4": ..., "ROUGE-L": ..., "CIDEr-D": ...}`` plus ``"METEOR"`` when asked.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    if tokenize:
        predictions, references = tokenize_corpus(predictions, references)
    out: dict[str, float | None] = {f"BLEU-{k + 1}": s for k, s in enumerate(bleu(predictions, references))}
    out["ROUGE-L"] = rouge_l(predictions, references)
    out["CIDEr-D"] = cider_d(predictions, references)
    if meteor:
        out["METEOR"] = meteor_score(predictions, references, meteor_jar)
    return out


def _encode(strings: Sequence[str], device: torch.device) -> tuple[Tensor, Tensor]:
    data = [s.encode("utf-8") for s in strings]
    raw = torch.frombuffer(bytearray(b"".join(data)), dtype=torch.uint8) if any(data) else torch.zeros(0)
    return raw.to(device=device, dtype=torch.uint8), torch.tensor([len(d) for d in data], device=device)


def _decode(raw: Tensor, lengths: Tensor) -> list[str]:
    data, out, pos = raw.cpu().numpy().tobytes(), [], 0
    for n in lengths.tolist():
        out.append(data[pos : pos + n].decode("utf-8"))
        pos += n
    return out


class CaptionMetrics(Metric):
    """BLEU-1..4, ROUGE-L, CIDEr-D and METEOR over every distinct test sample, scored once at the end.

    ``update`` stores the strings as UTF-8 byte tensors in list states (``dist_reduce_fx="cat"``), so the
    usual torchmetrics sync gathers the captions of every rank; ``compute`` then drops repeated sample
    indices (padded duplicates of a ``DistributedSampler``, first occurrence kept), PTB-tokenises and scores
    the whole corpus once: CIDEr-D's document frequencies therefore come from all references. METEOR runs
    the reference jar on one rank and is broadcast to the others.

    Args:
        meteor: ``True``: compute METEOR (reported as ``None``, with a warning, when Java or the jar is
            missing); ``False``: skip it; ``None`` (default): compute it when Java and the jar are found.
        meteor_jar: The METEOR 1.5 jar; default ``$VIOLET_METEOR_JAR`` or pycocoevalcap's copy.
        scale: Multiplier of every score (100: the papers' convention, CIDEr-D 0.5 -> 50.0).
        tokenize: PTB-tokenise predictions and references (``False`` when they are already tokenised).
        kwargs: Passed to ``torchmetrics.Metric``.

    ``compute`` returns ``{"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr-D"[, "METEOR"]}`` as
    float64 scalar tensors; ``"METEOR"`` is absent when it is unavailable (never 0).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        meteor: bool | None = None,
        meteor_jar: str | None = None,
        scale: float = 100.0,
        tokenize: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.meteor_jar, self.scale, self.tokenize = meteor_jar, scale, tokenize
        available = find_java() is not None and find_meteor_jar(meteor_jar) is not None
        if meteor and not available:
            log.warning(
                "CaptionMetrics: METEOR asked for but Java or the METEOR 1.5 jar is missing; not reported"
            )
        self.meteor = available if meteor is None else bool(meteor) and available
        for name in ("index", "pred_bytes", "pred_len", "ref_bytes", "ref_len", "ref_count"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self, predictions: Sequence[str], references: Sequence[Sequence[str]], indices: Tensor
    ) -> None:
        """Add a batch.

        Args:
            predictions: ``b`` generated captions.
            references: ``b`` lists of reference captions.
            indices: ``[b]`` dataset index of each sample.
        """
        if isinstance(predictions, str) or len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
        for i, refs in enumerate(references):
            if isinstance(refs, str) or not refs:
                raise ValueError(f"references[{i}] must be a non-empty list of captions, got {refs!r}")
        dev = self.device
        self.index.append(as_index(indices, "indices", len(predictions)).to(dev))
        raw, lengths = _encode(predictions, dev)
        self.pred_bytes.append(raw)
        self.pred_len.append(lengths)
        raw, lengths = _encode([r for refs in references for r in refs], dev)
        self.ref_bytes.append(raw)
        self.ref_len.append(lengths)
        self.ref_count.append(torch.tensor([len(r) for r in references], device=dev))

    def corpus(self) -> tuple[list[int], list[str], list[list[str]]]:
        """The distinct samples gathered so far: ``(indices, predictions, references)`` in arrival order."""
        dev = self.device
        index = cat_state(self.index, torch.long, dev)
        if index.numel() == 0:
            raise ValueError("CaptionMetrics: no captions to score (update was never called)")
        predictions = _decode(
            cat_state(self.pred_bytes, torch.uint8, dev), cat_state(self.pred_len, torch.long, dev)
        )
        flat = _decode(cat_state(self.ref_bytes, torch.uint8, dev), cat_state(self.ref_len, torch.long, dev))
        references = _split(flat, cat_state(self.ref_count, torch.long, dev).tolist())
        keep = first_occurrence(index).tolist()
        return [int(index[k]) for k in keep], [predictions[k] for k in keep], [references[k] for k in keep]

    def _meteor(self, predictions: list[str], references: list[list[str]]) -> float | None:
        shared = (
            self.sync_on_compute
            and dist.is_available()
            and dist.is_initialized()
            and dist.get_world_size() > 1
        )
        if not shared:
            return meteor_score(predictions, references, self.meteor_jar)
        result = [meteor_score(predictions, references, self.meteor_jar) if dist.get_rank() == 0 else None]
        dist.broadcast_object_list(result, src=0)
        return result[0]

    def compute(self) -> dict[str, Tensor]:
        """Scores of the whole corpus (x ``scale``)."""
        _, predictions, references = self.corpus()
        if self.tokenize:
            predictions, references = tokenize_corpus(predictions, references)
        scores = caption_scores(predictions, references, tokenize=False)
        if self.meteor:
            scores["METEOR"] = self._meteor(predictions, references)
        return {
            k: torch.tensor(v * self.scale, dtype=torch.float64, device=self.device)
            for k, v in scores.items()
            if v is not None
        }
