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
from .results import Answer, Caption, Hit, Results

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

    def task_view(self, task: str, **hparams: Any) -> Any:
        """This module as the task module ``task`` (a key of :data:`~violetv2.inference.pretrained.TASKS`).

        Itself when it is one (and its hyperparameters equal ``hparams``), else a module of that class sharing
        this module's weights (built once per setting, on ``meta``, so nothing is allocated).
        """
        target = _resolve_class(object, TASKS[task], task)
        if isinstance(self, target) and all(self.hparams.get(k) == v for k, v in hparams.items()):
            return self
        views = self.__dict__.setdefault("_task_views", {})
        key = (task, tuple(sorted(hparams.items())), self.preprocessing.tokenizer)
        if key not in views:
            views[key] = _build_view(self, target, hparams)
        return views[key]

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

    def _fingerprint(self) -> str:
        """:func:`encoder_fingerprint` of this model, recomputed only when a video-encoder weight changed."""
        pre = self.preprocessing.to_dict()
        state = [(id(p), p._version) for p in self.model.backbone.video.parameters()]
        key = (repr(pre), tuple(state))
        cached = self.__dict__.get("_encoder_fingerprint")
        if cached is None or cached[0] != key:
            cached = (key, encoder_fingerprint(self.model, pre))
            self.__dict__["_encoder_fingerprint"] = cached
        return cached[1]

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
                tokens.append(video.tokens.cpu())  # a large collection stays in host memory
                meta = (video.frames, video.grid)
        fingerprint = self._fingerprint()
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
            index.check(self._fingerprint())
            tok, length = self._text_tokenizer(), self.preprocessing.max_text_len
            encoded = [layouts.caption(tok, t, length) for t in texts]
            ids = torch.stack([e.ids for e in encoded]).to(param.device)
            mask = torch.stack([e.mask for e in encoded]).to(param.device)
            video = VideoTokens(index.tokens.to(param.device, param.dtype), index.frames, index.grid)
            logits = view.pair_logits(video, ids, mask, chunk=view.hparams.pair_batch)
            return view.score(logits).t().float().cpu()

    # ------------------------------------------------------------------ question answering
    def answer(
        self,
        videos: Videos,
        questions: str | Sequence[str],
        options: Sequence[str] | Sequence[Sequence[str]] | None = None,
        *,
        batch_size: int = 16,
        num_workers: int | None = None,
        progress: bool = True,
    ) -> Results[Answer]:
        """Answer one question per video: open-ended (MLM head at ``[MASK]``, or the answer classifier) or
        multiple choice when ``options`` are given (VTM head per option, or options-in-the-prompt MLM head).

        A question holding a blank (``_____``) or ``[MASK]`` is a fill-in-the-blank sentence.

        Args:
            videos: Paths, bytes, uint8 ``[t, c, h, w]`` tensors, or an already-decoded batch.
            questions: One per video, or one for all.
            options: Multiple choice: one list of options per video, or one list for all.
            batch_size: Videos per forward.
            num_workers: Decoding processes (default: up to 4 for lists longer than a batch).
            progress: Show a progress bar.

        Returns:
            :class:`Answer` records in input order (unreadable videos left out, listed in ``failures``).
        """
        view, layout = self._qa_task(options)
        failures: list[Failure] = []
        out: list[Answer] = []
        opts = {"batch_size": batch_size, "num_workers": num_workers, "progress": progress, "desc": "answers"}
        with self._inference():
            for clips in self._clips(videos, opts, failures):
                qs = [_pick(questions, i, "questions") for i in clips.indices]
                os_ = (
                    [list(_pick(options, i, "options", nested=True)) for i in clips.indices]
                    if options
                    else None
                )
                batch = self._text_batch(clips, layout, qs, os_)
                for k, record in enumerate(view.predict_step(batch, 0)):
                    out.append(_answer(clips.names[k], qs[k], record, os_[k] if os_ else None))
        return Results(out, failures)

    def _qa_task(self, options: Any) -> tuple[Any, str]:
        """The task module and text layout that answer (open-ended when ``options`` is None)."""
        from ..tasks.multiple_choice import MultipleChoiceModule, PromptChoiceModule
        from ..tasks.qa import OpenQAModule

        heads = set(self.heads)
        if options is None:
            if isinstance(self, OpenQAModule):  # the classifier reads the bare question, as the release's
                return self, "classifier" if self.hparams.head == "classifier" else "qa"
            self._need("answer", "mlm")
            return self.task_view("open_qa"), "qa"
        if isinstance(self, PromptChoiceModule) or ("vtm" not in heads and "mlm" in heads):
            self._need("answer with options", "mlm")
            return self.task_view("prompt_choice", num_options=_num_options(options)), "mc_prompt"
        if not isinstance(self, MultipleChoiceModule):
            self._need("answer with options", "vtm", "mlm")
        return self.task_view("multiple_choice"), "choice"

    def _text_batch(
        self, clips: ClipBatch, layout: str, texts: list[str], options: list[list[str]] | None = None
    ) -> Any:
        """The clips with their texts in the task's layout, as a ``VideoTextBatch`` (rows repeated per clip)."""
        from ..data import layouts
        from ..data.batch import VideoTextBatch

        tok, length = self._text_tokenizer(), self.preprocessing.max_text_len
        fields: dict[str, Tensor] = {}
        if layout == "choice":
            enc = [layouts.choice(tok, q, o, length) for q, o in zip(texts, options)]
            fields["option_ids"], fields["option_mask"] = _stack_options(
                [e.ids for e in enc], [e.mask for e in enc]
            )
            enc = [layouts.caption(tok, q, length) for q in texts]
        elif layout == "mc_prompt":
            enc = [layouts.mc_prompt(tok, q, o, None, length) for q, o in zip(texts, options)]
        elif layout in ("qa", "classifier"):
            enc = [_masked_text(tok, q, length, classifier=layout == "classifier") for q in texts]
        else:  # caption layout (retrieval texts)
            enc = [layouts.caption(tok, q, length) for q in texts]
        fields["text_ids"] = torch.stack([e.ids for e in enc])
        fields["text_mask"] = torch.stack([e.mask for e in enc])
        n, device = clips.num_clips, clips.video.device
        fields = {k: v.repeat_interleave(n, 0).to(device) for k, v in fields.items()}
        names = [name for name in clips.names for _ in range(n)]
        ids = [f"{i}" for i in clips.indices for _ in range(n)]
        return VideoTextBatch(
            clips.video, sample_ids=ids, video_ids=names, num_clips=n, clip_valid=clips.clip_valid, **fields
        )

    # ------------------------------------------------------------------ captioning
    def caption(
        self,
        videos: Videos,
        *,
        beam_size: int = 1,
        max_len: int = 20,
        batch_size: int = 16,
        num_workers: int | None = None,
        progress: bool = True,
    ) -> Results[Caption]:
        """Generate a caption per video with the MLM head under the seq2seq mask.

        Args:
            videos: Paths, bytes, uint8 ``[t, c, h, w]`` tensors, or an already-decoded batch.
            beam_size: 1 = the published greedy loop; more = beam search.
            max_len: Caption length limit in tokens, ``[CLS]`` and ``[SEP]`` included (published 20).
            batch_size: Videos per forward.
            num_workers: Decoding processes (default: up to 4 for lists longer than a batch).
            progress: Show a progress bar.

        Returns:
            :class:`Caption` records in input order (unreadable videos in ``failures``).
        """
        self._need("caption", "mlm")
        view = self.task_view("captioning", beam_size=beam_size, max_length=max_len)
        failures: list[Failure] = []
        out: list[Caption] = []
        opts = {
            "batch_size": batch_size,
            "num_workers": num_workers,
            "progress": progress,
            "desc": "captions",
        }
        with self._inference():
            for clips in self._clips(videos, opts, failures):
                captions, score = view.caption_batch(_as_batch(clips))
                out += [Caption(n, c, float(s)) for n, c, s in zip(clips.names, captions, score)]
        return Results(out, failures)


def _as_batch(batch: ClipBatch) -> Any:
    """A :class:`~violetv2.data.batch.VideoTextBatch` of the clips (placeholder one-token texts)."""
    from ..data.batch import VideoTextBatch

    rows = batch.video.shape[0]
    ids = torch.zeros(rows, 1, dtype=torch.long, device=batch.video.device)
    names = [n for n in batch.names for _ in range(batch.num_clips)]
    return VideoTextBatch(
        batch.video,
        ids,
        torch.ones_like(ids),
        video_ids=names,
        num_clips=batch.num_clips,
        clip_valid=batch.clip_valid,
    )


def _build_view(module: Any, target: type, hparams: dict[str, Any]) -> Any:
    """A ``target`` module whose ``model`` is ``module.model`` (built on ``meta``, so nothing is allocated)."""
    from .pretrained import _INIT_PATHS, _accepts

    cfg = module.cfg
    args: dict[str, Any] = {}
    if isinstance(module, target):  # the same task with other settings: keep every other hyperparameter
        args.update(
            {k: v for k, v in module.hparams.items() if not k.startswith("_") and k not in _INIT_PATHS}
        )
    args.update(preset=cfg.name, config={k: v for k, v in cfg.to_dict().items() if k != "name"})
    if _accepts(target, "tokenizer"):
        args["tokenizer"] = module.preprocessing.tokenizer
    with torch.device("meta"):
        view = target(**{**args, **hparams})
    view.model = module.model
    view.preprocessing = module.preprocessing
    return view.eval()


def _pick(values: Any, i: int, name: str, nested: bool = False) -> Any:
    """``values[i]``, or ``values`` itself when one value is given for every video."""
    single = isinstance(values, str) if not nested else (values and isinstance(values[0], str))
    if single:
        return values
    if i >= len(values):
        raise ValueError(
            f"{name}: {len(values)} given, but there are more videos (need one per video or one)"
        )
    return values[i]


def _num_options(options: Any) -> int:
    counts = {len(options)} if isinstance(options[0], str) else {len(o) for o in options}
    if len(counts) != 1:
        raise ValueError(f"options-in-the-prompt needs the same number of options per question, got {counts}")
    return counts.pop()


def _stack_options(ids: list[Tensor], masks: list[Tensor]) -> tuple[Tensor, Tensor]:
    """``[b, o, l]`` options; rows with fewer options padded with all-padding options (scored -inf)."""
    most = max(x.shape[0] for x in ids)
    out = torch.zeros(len(ids), most, ids[0].shape[1], dtype=torch.long)
    mask = torch.zeros_like(out)
    for row, (x, m) in enumerate(zip(ids, masks)):
        out[row, : x.shape[0]], mask[row, : x.shape[0]] = x, m
    return out, mask


def _masked_text(tokenizer: Any, question: str, length: int, classifier: bool = False) -> Any:
    """The open-ended layouts: ``fill_blank`` for a sentence with a blank / ``[MASK]``; else ``qa`` (MLM head)
    or the bare question in the ``caption`` layout (the answer classifier, as the release's)."""
    from ..data import layouts
    from ..data.text import BLANK

    if BLANK.search(question) or tokenizer.mask_token in question:
        return layouts.fill_blank(tokenizer, question, None, length)
    if classifier:
        return layouts.caption(tokenizer, question, length)
    return layouts.qa(tokenizer, question, None, length)


def _answer(name: str, question: str, record: dict[str, Any], options: list[str] | None) -> Answer:
    prediction = record["prediction"]
    if options is not None:
        k = int(prediction)
        return Answer(name, question, options[k] if k < len(options) else str(k), record["score"], k)
    return Answer(name, question, str(prediction), record["score"])
