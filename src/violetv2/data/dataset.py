"""Map-style video-text dataset over :class:`~violetv2.data.records.Record` lists, and its collate function.

The text of every sample follows one of the release's layouts (:mod:`violetv2.data.layouts`), chosen by
``text_layout`` or, when that is None, by the record's task:

- ``caption`` / ``retrieval`` / ``captioning`` records -> ``caption``: ``text_ids [L]`` (captioning also
  gives ``answers``, the reference captions).
- ``multiple_choice`` -> ``choice`` (VTM head: ``option_ids [o, L]``, ``label`` the right option;
  ``text_ids`` the question); ``text_layout="mc_prompt"`` for TGIF-Action / Transition (``text_ids [L + 3]``,
  ``answer_ids`` = the option digit's id at the ``[MASK]``, ``label`` the option index).
- ``open_qa`` -> ``qa`` (``text_ids [L + 5]``); ``fill_blank`` -> ``fill_blank`` (``[L]``). ``answer_ids``
  is -100 except at the ``[MASK]``: the answer's vocabulary id when the answer is ONE vocabulary entry,
  otherwise -100 too (never answerable, so it counts wrong); ``answers`` the answer string. With an
  ``answer_vocab`` (classifier head) ``label`` is the answer's class index, -100 outside the vocabulary.

Every sample carries ``index``, its position in the dataset (for metric de-duplication).

Unreadable videos never stop an epoch: a missing / empty / corrupt file is logged once (per worker) with its
path, the sample is replaced by the next readable one (deterministic), and counted in
:attr:`VideoTextDataset.skipped` and in the collated batch's ``skipped`` field (log it as ``data/skipped``).
The replacement keeps its own ``index``, so metrics de-duplicating by index count it once.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from einops import rearrange, repeat
from torch import Tensor
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase

from violetv2.data import layouts
from violetv2.data.batch import VideoTextBatch
from violetv2.data.layouts import IGNORE_INDEX, LAYOUTS
from violetv2.data.records import Record
from violetv2.data.transforms import EvalTransform, TrainTransform
from violetv2.data.video import NumClips, Sampling, VideoDecodeError, read_clips

__all__ = ["DEFAULT_EXTENSIONS", "VideoTextDataset", "collate", "resolve_video"]

log = logging.getLogger(__name__)

DEFAULT_EXTENSIONS = (
    ".mp4",
    ".avi",
    ".mkv",
    ".webm",
    ".mov",
    ".m4v",
    ".mpg",
    ".mpeg",
    ".3gp",
    ".flv",
    ".gif",
)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
TASK_LAYOUT = {
    "caption": "caption",
    "retrieval": "caption",
    "captioning": "caption",
    "multiple_choice": "choice",
    "open_qa": "qa",
    "fill_blank": "fill_blank",
}
"""The text layout of each record task when ``text_layout`` is None."""


def resolve_video(root: Path, name: str, extensions: Sequence[str]) -> Path | None:
    """Find the file of video ``name`` under ``root``, with or without its extension.

    Tries ``root/name`` as given, then ``name`` (trailing dots stripped, as in DiDeMo's ``"abc."``) with each
    extension appended, then, if ``name`` ends in a known extension, its stem with each other extension.
    """
    exact = root / name
    if name and exact.is_file():
        return exact
    stem = name.rstrip(".")
    stems = [stem]
    if Path(stem).suffix.lower() in extensions:
        stems.append(stem[: -len(Path(stem).suffix)])
    for base in stems:
        for ext in extensions:
            for candidate in (root / (base + ext), root / (base + ext.upper())):
                if candidate.is_file():
                    return candidate
    return None


class VideoTextDataset(Dataset):
    """Records + a video folder + a tokenizer -> samples for :func:`collate`.

    Args:
        records: Annotation records (any task; see the module docstring for what each yields).
        video_root: Folder the records' ``video`` names are relative to.
        tokenizer: BERT-style tokenizer (see :func:`violetv2.data.text.load_tokenizer`).
        num_frames: Frames per clip (T: 4 pre-training, 5 downstream); images always give 1.
        image_size: Output side in pixels (224).
        max_text_len: Text length ``L`` (see :data:`violetv2.data.text.TASK_MAX_LEN`); the ``mc_prompt`` and
            ``qa`` layouts give ``L + 3`` / ``L + 5`` ids.
        train: Random frame offsets and crops (True) or deterministic ones (False).
        transform: Clip transform ``(uint8 [t, c, h, w], generator) -> [t, c, h, w]``; default
            :class:`TrainTransform` / :class:`EvalTransform` of ``image_size``. Its ``decode_side`` attribute
            (``"shorter"`` / ``"longer"`` / absent) says which side the decoder already resizes to
            ``image_size``.
        num_clips: Clips per video for multi-clip testing (collated as ``(b n)`` rows, see :func:`collate`);
            ``"all"``: the release's ``ceil(N / T)`` clips of a video of ``N`` frames.
        extensions: File extensions tried when a record's video name has none or it does not exist.
        seed: Base seed; sample ``i`` of epoch ``e`` draws from ``(seed, e, i)``, whatever the worker.
        text_layout: One of :data:`~violetv2.data.layouts.LAYOUTS` for every record, or None for the
            record task's default (:data:`TASK_LAYOUT`; open-QA records with an ``answer_vocab``: ``caption``,
            the question alone, as the release's classifier reads it).
        answer_vocab: Classifier-head answers (see :func:`~violetv2.data.layouts.answer_vocabulary`): QA
            records then get ``label`` = the answer's index, -100 when it is not in the list.
        sampling: Frame sampling rule, ``"release"`` (default) or ``"segments"`` (see
            :func:`~violetv2.data.video.sample_indices`).
        stored_frames: Sample as the release does from frame stores of this many frames per video (see
            :func:`~violetv2.data.video.sample_indices`); None: from every decoded frame.
        shuffle_options: In training, present a multiple-choice record's options in a fresh random order
            each epoch (``label`` follows its option): a question then cannot be fitted by remembering the
            index of its answer (records without a label keep their order). Off by default (the release keeps
            the annotation's order).
    """

    def __init__(
        self,
        records: Sequence[Record],
        video_root: str | Path,
        tokenizer: PreTrainedTokenizerBase,
        *,
        num_frames: int,
        image_size: int,
        max_text_len: int,
        train: bool,
        transform: Callable[..., Tensor] | None = None,
        num_clips: NumClips = 1,
        extensions: Sequence[str] = DEFAULT_EXTENSIONS + IMAGE_EXTENSIONS,
        seed: int = 0,
        text_layout: str | None = None,
        answer_vocab: Sequence[str] | None = None,
        sampling: Sampling = "release",
        stored_frames: int | None = None,
        shuffle_options: bool = False,
    ) -> None:
        if not records:
            raise ValueError("VideoTextDataset needs at least one record")
        if text_layout is not None and text_layout not in LAYOUTS:
            raise ValueError(f"unknown text_layout {text_layout!r}; choose from {list(LAYOUTS)} or None")
        self.text_layout, self.sampling, self.stored_frames = text_layout, sampling, stored_frames
        self.shuffle_options = shuffle_options
        self.answer_index = None if answer_vocab is None else {a: i for i, a in enumerate(answer_vocab)}
        self.records = list(records)
        self.video_root = Path(video_root)
        self.tokenizer = tokenizer
        self.num_frames, self.image_size, self.max_text_len = num_frames, image_size, max_text_len
        self.train, self.num_clips, self.seed, self.epoch = train, num_clips, seed, 0
        self.extensions = tuple(e.lower() for e in extensions)
        self.transform = transform or (TrainTransform if train else EvalTransform)(image_size)
        self.skipped = 0
        self._warned_cut = False
        self._bad: dict[str, str] = {}
        self._paths: dict[str, Path | None] = {}

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Change the random draws of training sampling / cropping (call at each epoch start)."""
        self.epoch = epoch

    def resolve(self, record: Record) -> Path:
        """The file of ``record.video`` under the video root.

        Raises:
            VideoDecodeError: No candidate file exists.
        """
        if record.video not in self._paths:
            self._paths[record.video] = resolve_video(self.video_root, record.video, self.extensions)
        path = self._paths[record.video]
        if path is None:
            raise VideoDecodeError(
                str(self.video_root / record.video), f"no such file (tried {self.extensions})"
            )
        return path

    def load_clip(self, record: Record, rng: random.Random) -> Tensor:
        """Decoded uint8 ``[n, t, c, h, w]`` clips of ``record``.

        This is the hook for other frame sources: a pre-decoded JPEG-shard reader overrides this method (same
        output layout, same :func:`~violetv2.data.video.sample_indices`) and inherits everything else.
        """
        return self.decode_clip(self.resolve(record), record, rng)

    def decode_clip(
        self, source: str | Path | bytes, record: Record, rng: random.Random, *, trimmed: bool = False
    ) -> Tensor:
        """Sample and decode ``record``'s clips from ``source`` (a file or its bytes) as this dataset is set
        up to (frames, clips, decode-time resize); ``trimmed``: the source already holds only [start, end)."""
        side = getattr(self.transform, "decode_side", None)
        return read_clips(
            source,
            1 if record.is_image else self.num_frames,
            train=self.train,
            num_clips=self.num_clips,
            rng=rng,
            size=self.image_size if side else None,
            side=side or "shorter",
            start=None if trimmed else record.start,
            end=None if trimmed else record.end,
            sampling=self.sampling,
            stored_frames=self.stored_frames,
        )

    def __getitem__(self, index: int) -> dict[str, Any]:
        # an EpochIndex (from ResumableSampler) carries its epoch: persistent DataLoader workers hold a copy of
        # this dataset made before the first epoch, which set_epoch in the main process never reaches
        epoch = getattr(index, "epoch", self.epoch)
        first_error: VideoDecodeError | None = None
        for attempt in range(len(self.records)):
            i = (int(index) + attempt) % len(self.records)
            try:
                sample = self._sample(i, epoch)
            except VideoDecodeError as e:
                first_error = first_error or e
                self._note_bad(e)
                continue
            sample["skipped"] = attempt
            return sample
        raise RuntimeError(
            f"every one of the {len(self.records)} samples failed to load; first: {first_error}"
        )

    def _note_bad(self, error: VideoDecodeError) -> None:
        self.skipped += 1
        if error.path not in self._bad:
            self._bad[error.path] = error.reason
            log.warning("skipping unreadable video %s: %s", error.path, error.reason)

    def _sample(self, i: int, epoch: int) -> dict[str, Any]:
        record = self.records[i]
        if str(self._paths.get(record.video)) in self._bad:  # known bad: do not decode it again
            path = str(self._paths[record.video])
            raise VideoDecodeError(path, self._bad[path])
        rng = random.Random(f"{self.seed}-{epoch}-{i}")
        generator = torch.Generator().manual_seed(rng.getrandbits(62))
        clips = self.load_clip(record, rng)
        video = torch.stack([self.transform(clip, generator) for clip in clips])
        sample = {"video": video, "sample_id": record.sample_id, "video_id": record.video, "index": i}
        sample["is_image"] = record.is_image
        sample.update(self._text_fields(record, rng))
        return sample

    def layout_of(self, record: Record) -> str:
        """The text layout ``record`` is encoded with."""
        if self.text_layout is not None:
            return self.text_layout
        if record.task == "open_qa" and self.answer_index is not None:
            return "caption"  # the release's classifier (main_qaoe.py) reads the [CLS] of the bare question
        if record.task not in TASK_LAYOUT:
            raise ValueError(f"unknown task {record.task!r} in record {record.sample_id} ({record.source})")
        return TASK_LAYOUT[record.task]

    def _text_fields(self, record: Record, rng: random.Random | None = None) -> dict[str, Any]:
        layout, tok, length = self.layout_of(record), self.tokenizer, self.max_text_len
        if layout in ("choice", "mc_prompt"):
            fields = self._choice(record, layout, rng)
        elif layout == "caption":
            fields = _fields(layouts.caption(tok, self._caption_text(record, rng), length))
        elif record.task not in ("open_qa", "fill_blank"):
            raise ValueError(
                f"text_layout {layout!r} needs open_qa / fill_blank records, record {record.sample_id} "
                f"({record.source}) is {record.task!r}"
            )
        else:
            encode = layouts.qa if layout == "qa" else layouts.fill_blank
            fields = _fields(encode(tok, record.text, record.answer, length))
        if record.task == "captioning":
            fields["answers"] = list(record.captions) or [record.text]
        if record.task in ("open_qa", "fill_blank"):
            fields |= self._answer_label(record)
        return fields

    def _caption_text(self, record: Record, rng: random.Random | None) -> str:
        """The caption; a paragraph record (DiDeMo) in training: a random non-empty subset of its sentences
        in random order, joined by a space (the release's retrieval training)."""
        caps = record.captions
        paragraph = record.task == "retrieval" and len(caps) > 1 and record.text == " ".join(caps)
        if not (self.train and paragraph and rng is not None):
            return record.text
        return " ".join(rng.sample(caps, rng.randint(1, len(caps))))

    def _choice(self, record: Record, layout: str, rng: random.Random | None = None) -> dict[str, Any]:
        if not record.options:
            raise ValueError(f"multiple-choice record {record.sample_id} ({record.source}) has no options")
        if self.shuffle_options and self.train and rng is not None and record.label is not None:
            if not 0 <= record.label < len(record.options):
                raise ValueError(
                    f"multiple-choice record {record.sample_id} ({record.source}): label {record.label} is not "
                    f"an index of its {len(record.options)} options"
                )
            order = rng.sample(range(len(record.options)), len(record.options))
            options = [record.options[k] for k in order]
            record = dataclasses.replace(record, options=options, label=order.index(record.label))
        label = IGNORE_INDEX if record.label is None else record.label
        tok, length = self.tokenizer, self.max_text_len
        if layout == "mc_prompt":

            def cut(pieces: int) -> None:
                self._warned_cut = True
                log.warning(
                    "record %s (%s): its prompt has %d word pieces, max_text_len=%d keeps %d: the options after "
                    "the cut are not seen by the model (the release's TGIF length is 100)",
                    record.sample_id, record.source, pieces, length, length - 1,
                )  # fmt: skip

            on_cut = None if self._warned_cut else cut
            prompt = layouts.mc_prompt(tok, record.text, record.options, record.label, length, on_cut)
            fields = _fields(prompt)
            return {**fields, "label": label}
        options = layouts.choice(tok, record.text, record.options, length)
        question = layouts.caption(tok, record.text, length)
        return {**_fields(question), "option_ids": options.ids, "option_mask": options.mask, "label": label}

    def _answer_label(self, record: Record) -> dict[str, Any]:
        fields: dict[str, Any] = {"answers": record.answer}
        if self.answer_index is not None:
            fields["label"] = self.answer_index.get(record.answer, IGNORE_INDEX)  # type: ignore[arg-type]
        elif record.label is not None:
            fields["label"] = record.label
        return fields


def _fields(encoded: layouts.Encoded) -> dict[str, Any]:
    out = {"text_ids": encoded.ids, "text_mask": encoded.mask}
    if encoded.labels is not None:
        out["answer_ids"] = encoded.labels
    return out


def _stack_options(samples: list[dict[str, Any]]) -> tuple[Tensor, Tensor]:
    """``[b, o, l]`` options; rows with fewer options are padded with all-padding options (mask 0)."""
    most = max(s["option_ids"].shape[0] for s in samples)
    ids = torch.zeros(len(samples), most, samples[0]["option_ids"].shape[1], dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, s in enumerate(samples):
        o = s["option_ids"].shape[0]
        ids[row, :o], mask[row, :o] = s["option_ids"], s["option_mask"]
    return ids, mask


def _pad_clips(samples: list[dict[str, Any]]) -> tuple[Tensor, Tensor | None]:
    """``[b, n, t, c, h, w]`` videos, each sample padded to the batch's most clips with copies of its last
    clip, and the ``[b, n]`` validity of every clip (None when no sample needed padding)."""
    n = max(s["video"].shape[0] for s in samples)
    padded, valid = [], []
    for s in samples:
        video, have = s["video"], s["video"].shape[0]
        padded.append(
            torch.cat([video, video[-1:].expand(n - have, *video.shape[1:])]) if have < n else video
        )
        valid.append(torch.arange(n) < have)
    valid_t = torch.stack(valid)
    return torch.stack(padded), None if bool(valid_t.all()) else valid_t


def collate(samples: list[dict[str, Any]]) -> VideoTextBatch:
    """Stack :class:`VideoTextDataset` samples into one batch.

    Videos ``[n, t, c, h, w]`` become ``[b, t, c, h, w]`` (``n == 1``) or ``[(b n), t, c, h, w]`` with every
    other field repeated per clip (multi-clip testing, ``batch.num_clips = n``). Samples with fewer clips
    than the batch's most (``num_clips="all"`` on videos of different lengths) are padded with copies of
    their last clip, marked False in ``batch.clip_valid``. Multiple-choice samples with fewer options than
    the batch's most are padded with empty options (``option_mask`` all 0: score them -inf).

    Raises:
        ValueError: The samples' frame shapes differ (e.g. images mixed with videos).
    """
    shapes = {tuple(s["video"].shape[1:]) for s in samples}
    if len(shapes) > 1:
        ids = [s["sample_id"] for s in samples]
        raise ValueError(f"cannot stack clips of different shapes {sorted(shapes)} (samples {ids})")
    videos, valid = _pad_clips(samples)
    n = videos.shape[1]
    video = rearrange(videos, "b n t c h w -> (b n) t c h w")
    fields: dict[str, Any] = {
        "text_ids": torch.stack([s["text_ids"] for s in samples]),
        "text_mask": torch.stack([s["text_mask"] for s in samples]),
        "is_image": torch.tensor([s["is_image"] for s in samples]),
        "index": torch.tensor([s.get("index", -1) for s in samples], dtype=torch.long),
    }
    if any("label" in s for s in samples):
        fields["label"] = torch.tensor([s.get("label", IGNORE_INDEX) for s in samples])
    if any("option_ids" in s for s in samples):
        fields["option_ids"], fields["option_mask"] = _stack_options(samples)
    if any("answer_ids" in s for s in samples):
        fields["answer_ids"] = torch.stack([s["answer_ids"] for s in samples])
    fields = {k: repeat(v, "b ... -> (b n) ...", n=n) for k, v in fields.items()}
    if valid is not None:
        fields["clip_valid"] = rearrange(valid, "b n -> (b n)")
    lists = {"sample_ids": [s["sample_id"] for s in samples], "video_ids": [s["video_id"] for s in samples]}
    if any("answers" in s for s in samples):
        lists["answers"] = [s.get("answers") for s in samples]
    lists = {k: [x for x in v for _ in range(n)] for k, v in lists.items()}
    skipped = sum(s.get("skipped", 0) for s in samples)
    return VideoTextBatch(video=video, **fields, **lists, skipped=skipped, num_clips=n)
