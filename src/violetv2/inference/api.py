"""``model.retrieve`` / ``model.answer`` / ``model.caption``: any saved model on video files, in one call.

The methods prepare inputs with the model's own :class:`~violetv2.inference.preprocessing.Preprocessing`,
build the task's text layout (:mod:`violetv2.data.layouts`) and then call the task module's own scoring code
(the functions its ``test_step`` / ``predict_step`` use), so results equal an evaluation run on the same clips.
On a module of another class (e.g. ``retrieve`` on a pre-training checkpoint, zero-shot) the task module is
built as a light *view* sharing this module's weights. Everything runs under ``torch.inference_mode`` in
eval mode, on the module's device and dtype.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from .index import VideoIndex, encoder_fingerprint
from .inputs import ClipBatch, Failure, Videos, iter_clips
from .pretrained import TASKS, _resolve_class
from .results import Hit, Results

__all__ = ["InferenceMixin", "MissingHeadError"]


class MissingHeadError(ValueError):
    """A task method was called on a module without the head it needs."""


class InferenceMixin:
    """Task methods of :class:`~violetv2.VioletModule` (mixed into it)."""

    # ------------------------------------------------------------------ plumbing
    @property
    def heads(self) -> list[str]:
        """Names of the heads this module has: ``vtm``, ``mlm``, ``answers``, ``task_token``, ``mvm:<target>``."""
        model = self.model
        names = [n for n, h in (("vtm", model.vtm_head), ("mlm", model.mlm_head)) if h is not None]
        if getattr(model, "answer_head", None) is not None:
            names.append("answers")
        if getattr(model, "task_embedding", None) is not None:
            names.append("task_token")
        return names + [f"mvm:{k}" for k in model.mvm_heads]

    def _need(self, method: str, *any_of: str) -> None:
        if not set(any_of) & set(self.heads):
            raise MissingHeadError(
                f"{method} needs the {' or '.join(h.upper() for h in any_of)} head; this "
                f"{type(self).__name__} has: {', '.join(self.heads) or 'no heads'}"
            )

    def task_view(self, task: str) -> Any:
        """This module as the task module ``task`` (a key of :data:`~violetv2.inference.pretrained.TASKS`):
        itself when it is one, else a module of that class sharing this module's weights (cached)."""
        target = _resolve_class(object, TASKS[task], task)
        if isinstance(self, target):
            return self
        views = self.__dict__.setdefault("_task_views", {})
        if task not in views:
            views[task] = _build_view(self, target)
        return views[task]

    def _text_tokenizer(self) -> Any:
        """The tokenizer of the preprocessing (loaded once)."""
        name = self.preprocessing.tokenizer
        cached = self.__dict__.get("_inference_tokenizer")
        if cached is None or cached[0] != name:
            from ..data.text import load_tokenizer

            if name is None:
                raise ValueError(f"{type(self).__name__} has no tokenizer in its preprocessing")
            cached = (name, load_tokenizer(name))
            self.__dict__["_inference_tokenizer"] = cached
        return cached[1]

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        """Eval mode and ``torch.inference_mode`` for the call; training mode restored afterwards."""
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                yield
        finally:
            self.train(was_training)

    def _param(self) -> torch.nn.Parameter:
        return next(self.parameters())

    def _clips(self, videos: Videos, options: dict[str, Any], failures: list[Failure]) -> Iterator[ClipBatch]:
        param = self._param()
        for batch in iter_clips(videos, self.preprocessing, failures=failures, **options):
            batch.video = batch.video.to(param.device, param.dtype)
            yield batch

    # ------------------------------------------------------------------ retrieval
    def index_videos(
        self,
        videos: Videos,
        *,
        batch_size: int = 16,
        num_workers: int | None = None,
        progress: bool = True,
    ) -> VideoIndex:
        """Encode a collection once for :meth:`retrieve` (save it with ``index.save(path)``).

        Args:
            videos: Paths, bytes, uint8 ``[t, c, h, w]`` tensors, or an already-decoded batch.
            batch_size: Videos per encoder forward.
            num_workers: Decoding processes (default: up to 4 for lists longer than a batch).
            progress: Show a progress bar.

        Returns:
            The :class:`VideoIndex`; unreadable inputs are in its ``failures``.
        """
        self._need("index_videos", "vtm")
        view = self.task_view("retrieval")
        failures: list[Failure] = []
        names, positions, tokens, meta = [], [], [], (self.preprocessing.num_frames, (0, 0))
        options = {"batch_size": batch_size, "num_workers": num_workers, "progress": progress}
        with self._inference():
            for batch in self._clips(videos, options, failures):
                video = view.encode(_as_batch(batch))
                names += batch.names
                positions += batch.indices
                tokens.append(video.tokens)
                meta = (video.frames, video.grid)
            fingerprint = encoder_fingerprint(self.model, self.preprocessing.to_dict())
        if not tokens:
            raise ValueError(f"none of the videos could be read: {[f.video for f in failures][:8]}")
        return VideoIndex(names, torch.cat(tokens), meta[0], meta[1], fingerprint, failures, positions)

    def retrieve(
        self,
        texts: str | Sequence[str],
        videos: Videos | VideoIndex,
        *,
        top_k: int | None = 5,
        batch_size: int = 16,
        num_workers: int | None = None,
        progress: bool = True,
    ) -> Results[Hit]:
        """Rank videos for each text with the VTM head (every pair through the cross encoder).

        Args:
            texts: Queries.
            videos: A :class:`VideoIndex` (from :meth:`index_videos` or ``VideoIndex.load``) or videos to encode
                now (see :meth:`index_videos`).
            top_k: Hits kept per query (``None``: all videos).
            batch_size: Videos per encoder forward (when encoding now).
            num_workers: Decoding processes (when encoding now).
            progress: Show progress bars.

        Returns:
            :class:`Hit` records ordered by query, then rank; ``results.failures`` lists unreadable videos and
            ``results.scores`` is the full ``[num_texts, num_videos]`` score matrix.
        """
        self._need("retrieve", "vtm")
        queries = [texts] if isinstance(texts, str) else list(texts)
        index = videos if isinstance(videos, VideoIndex) else None
        if index is None:
            index = self.index_videos(
                videos, batch_size=batch_size, num_workers=num_workers, progress=progress
            )
        scores = self.text_video_scores(queries, index)
        k = len(index) if top_k is None else min(top_k, len(index))
        top = scores.topk(k, dim=1) if k else None
        hits = [
            Hit(query, index.names[j], float(s), rank + 1, index.positions[j])
            for q, query in enumerate(queries)
            for rank, (s, j) in enumerate(zip(top.values[q], top.indices[q]))
        ]
        results = Results(hits, index.failures)
        results.scores = scores
        return results

    def text_video_scores(self, texts: Sequence[str], index: VideoIndex) -> Tensor:
        """``[num_texts, num_videos]`` retrieval scores of every pair (the retrieval task's evaluation score)."""
        from ..data import layouts
        from ..tasks.downstream import VideoTokens

        self._need("retrieve", "vtm")
        view = self.task_view("retrieval")
        param = self._param()
        with self._inference():
            index.check(encoder_fingerprint(self.model, self.preprocessing.to_dict()))
            tok, length = self._text_tokenizer(), self.preprocessing.max_text_len
            encoded = [layouts.caption(tok, t, length) for t in texts]
            ids = torch.stack([e.ids for e in encoded]).to(param.device)
            mask = torch.stack([e.mask for e in encoded]).to(param.device)
            video = VideoTokens(index.tokens.to(param.device, param.dtype), index.frames, index.grid)
            logits = view.pair_logits(video, ids, mask, chunk=view.hparams.pair_batch)
            return view.score(logits).t().float().cpu()


def _as_batch(batch: ClipBatch) -> Any:
    """A :class:`~violetv2.data.batch.VideoTextBatch` of the clips (placeholder one-token texts)."""
    from ..data.batch import VideoTextBatch

    rows = batch.video.shape[0]
    ids = torch.zeros(rows, 1, dtype=torch.long, device=batch.video.device)
    names = [n for n in batch.names for _ in range(batch.num_clips)]
    return VideoTextBatch(batch.video, ids, torch.ones_like(ids), video_ids=names, num_clips=batch.num_clips)


def _build_view(module: Any, target: type) -> Any:
    """A ``target`` module whose ``model`` is ``module.model`` (built on ``meta``, so nothing is allocated)."""
    from .pretrained import _accepts

    cfg = module.cfg
    args: dict[str, Any] = {
        "preset": cfg.name,
        "config": {k: v for k, v in cfg.to_dict().items() if k != "name"},
    }
    if _accepts(target, "tokenizer"):
        args["tokenizer"] = module.preprocessing.tokenizer
    with torch.device("meta"):
        view = target(**args)
    view.model = module.model
    view.preprocessing = module.preprocessing
    return view.eval()
