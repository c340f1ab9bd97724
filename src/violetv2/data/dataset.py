"""Map-style video-text dataset over :class:`~violetv2.data.records.Record` lists, and its collate function.

Per task, a sample carries (see :class:`~violetv2.data.batch.VideoTextBatch`):

- ``caption`` / ``retrieval``: ``text_ids`` of the caption.
- ``multiple_choice``: ``option_ids [o, l]``, each ``[CLS] question [SEP] option [SEP]`` (the option alone
  when there is no question), ``label`` the correct option; ``text_ids`` holds the question.
- ``open_qa``: ``[CLS] question [SEP] answer : [MASK] [SEP]``; ``fill_blank``: the sentence with its blank
  ``_____`` replaced by ``[MASK]``. ``answer_ids`` is -100 everywhere except at the ``[MASK]``, which holds
  the answer's *first* word piece, and ``answers`` the answer string. An answer of several word pieces cannot
  be produced by one ``[MASK]``: it is trained on its first piece, and an accuracy metric must compare the
  decoded prediction with the ``answers`` string (not with ``answer_ids``), so such answers always count
  wrong, as in the paper. ``label`` passes through the record's answer-class index when it has one.
- ``captioning``: ``text_ids`` of the caption, ``answers`` the reference captions (a list per sample).

Unreadable videos never stop an epoch: a missing / empty / corrupt file is logged once (per worker) with its
path, the sample is replaced by the next readable one (deterministic), and counted in
:attr:`VideoTextDataset.skipped` and in the collated batch's ``skipped`` field (log it as ``data/skipped``).
"""

from __future__ import annotations

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

from violetv2.data.batch import VideoTextBatch
from violetv2.data.records import Record
from violetv2.data.text import fill_blank, tokenize, tokenize_around_mask
from violetv2.data.transforms import EvalTransform, TrainTransform
from violetv2.data.video import VideoDecodeError, read_clips

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
IGNORE_INDEX = -100


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
        max_text_len: Text length (see :data:`violetv2.data.text.TASK_MAX_LEN`).
        train: Random frame offsets and crops (True) or deterministic centres (False).
        transform: Clip transform ``(uint8 [t, c, h, w], generator) -> [t, c, h, w]``; default
            :class:`TrainTransform` / :class:`EvalTransform` of ``image_size``. Its ``decode_side`` attribute
            (``"shorter"`` / ``"longer"`` / absent) says which side the decoder already resizes to
            ``image_size``.
        num_clips: Clips per video for multi-clip testing (collated as ``(b n)`` rows, see :func:`collate`).
        extensions: File extensions tried when a record's video name has none or it does not exist.
        seed: Base seed; sample ``i`` of epoch ``e`` draws from ``(seed, e, i)``, whatever the worker.
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
        num_clips: int = 1,
        extensions: Sequence[str] = DEFAULT_EXTENSIONS + IMAGE_EXTENSIONS,
        seed: int = 0,
    ) -> None:
        if not records:
            raise ValueError("VideoTextDataset needs at least one record")
        self.records = list(records)
        self.video_root = Path(video_root)
        self.tokenizer = tokenizer
        self.num_frames, self.image_size, self.max_text_len = num_frames, image_size, max_text_len
        self.train, self.num_clips, self.seed, self.epoch = train, num_clips, seed, 0
        self.extensions = tuple(e.lower() for e in extensions)
        self.transform = transform or (TrainTransform if train else EvalTransform)(image_size)
        self.skipped = 0
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
        )

    def __getitem__(self, index: int) -> dict[str, Any]:
        first_error: VideoDecodeError | None = None
        for attempt in range(len(self.records)):
            i = (index + attempt) % len(self.records)
            try:
                sample = self._sample(i)
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

    def _sample(self, i: int) -> dict[str, Any]:
        record = self.records[i]
        if str(self._paths.get(record.video)) in self._bad:  # known bad: do not decode it again
            path = str(self._paths[record.video])
            raise VideoDecodeError(path, self._bad[path])
        rng = random.Random(f"{self.seed}-{self.epoch}-{i}")
        generator = torch.Generator().manual_seed(rng.getrandbits(62))
        clips = self.load_clip(record, rng)
        video = torch.stack([self.transform(clip, generator) for clip in clips])
        sample = {"video": video, "sample_id": record.sample_id, "video_id": record.video}
        sample["is_image"] = record.is_image
        sample.update(self._text_fields(record))
        return sample

    def _text_fields(self, record: Record) -> dict[str, Any]:
        task = record.task
        if task in ("caption", "retrieval"):
            return self._encode(record.text)
        if task == "multiple_choice":
            return self._multiple_choice(record)
        if task in ("open_qa", "fill_blank"):
            return self._masked_answer(record)
        if task == "captioning":
            return {**self._encode(record.text), "answers": list(record.captions) or [record.text]}
        raise ValueError(f"unknown task {task!r} in record {record.sample_id} ({record.source})")

    def _encode(self, text: str, pair: str | None = None) -> dict[str, Any]:
        ids, mask = tokenize(self.tokenizer, [text], self.max_text_len, None if pair is None else [pair])
        return {"text_ids": ids[0], "text_mask": mask[0]}

    def _multiple_choice(self, record: Record) -> dict[str, Any]:
        if not record.options or record.label is None:
            raise ValueError(
                f"multiple-choice record {record.sample_id} ({record.source}) needs options and label"
            )
        options = list(record.options)
        if record.text:
            ids, mask = tokenize(self.tokenizer, [record.text] * len(options), self.max_text_len, options)
        else:
            ids, mask = tokenize(self.tokenizer, options, self.max_text_len)
        return {**self._encode(record.text), "option_ids": ids, "option_mask": mask, "label": record.label}

    def _masked_answer(self, record: Record) -> dict[str, Any]:
        if record.answer is None:
            raise ValueError(f"{record.task} record {record.sample_id} ({record.source}) has no answer")
        tok = self.tokenizer
        if record.task == "fill_blank":
            ids, mask = tokenize_around_mask(tok, fill_blank(record.text, tok.mask_token), self.max_text_len)
        else:
            encoded = self._encode(record.text, f"answer : {tok.mask_token}")
            ids, mask = encoded["text_ids"], encoded["text_mask"]
        pieces = tok(record.answer, add_special_tokens=False)["input_ids"] or [tok.unk_token_id]
        answer_ids = torch.full_like(ids, IGNORE_INDEX)
        answer_ids[ids == tok.mask_token_id] = pieces[0]
        fields = {"text_ids": ids, "text_mask": mask, "answer_ids": answer_ids, "answers": record.answer}
        fields["answer_pieces"] = len(pieces)
        if record.label is not None:
            fields["label"] = record.label
        return fields


def _stack_options(samples: list[dict[str, Any]]) -> tuple[Tensor, Tensor]:
    """``[b, o, l]`` options; rows with fewer options are padded with all-padding options (mask 0)."""
    most = max(s["option_ids"].shape[0] for s in samples)
    ids = torch.zeros(len(samples), most, samples[0]["option_ids"].shape[1], dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, s in enumerate(samples):
        o = s["option_ids"].shape[0]
        ids[row, :o], mask[row, :o] = s["option_ids"], s["option_mask"]
    return ids, mask


def collate(samples: list[dict[str, Any]]) -> VideoTextBatch:
    """Stack :class:`VideoTextDataset` samples into one batch.

    Videos ``[n, t, c, h, w]`` become ``[b, t, c, h, w]`` (``n == 1``) or ``[(b n), t, c, h, w]`` with every
    other field repeated per clip (multi-clip testing, ``batch.num_clips = n``). Multiple-choice samples with
    fewer options than the batch's most are padded with empty options (``option_mask`` all 0: score them -inf).

    Raises:
        ValueError: The samples' clip shapes differ (e.g. images mixed with videos).
    """
    shapes = {tuple(s["video"].shape) for s in samples}
    if len(shapes) > 1:
        ids = [s["sample_id"] for s in samples]
        raise ValueError(f"cannot stack clips of different shapes {sorted(shapes)} (samples {ids})")
    n = samples[0]["video"].shape[0]
    video = rearrange(torch.stack([s["video"] for s in samples]), "b n t c h w -> (b n) t c h w")
    fields: dict[str, Any] = {
        "text_ids": torch.stack([s["text_ids"] for s in samples]),
        "text_mask": torch.stack([s["text_mask"] for s in samples]),
        "is_image": torch.tensor([s["is_image"] for s in samples]),
    }
    if any("label" in s for s in samples):
        fields["label"] = torch.tensor([s.get("label", IGNORE_INDEX) for s in samples])
    if any("option_ids" in s for s in samples):
        fields["option_ids"], fields["option_mask"] = _stack_options(samples)
    if any("answer_ids" in s for s in samples):
        fields["answer_ids"] = torch.stack([s["answer_ids"] for s in samples])
    fields = {k: repeat(v, "b ... -> (b n) ...", n=n) for k, v in fields.items()}
    lists = {"sample_ids": [s["sample_id"] for s in samples], "video_ids": [s["video_id"] for s in samples]}
    if any("answers" in s for s in samples):
        lists["answers"] = [s.get("answers") for s in samples]
    lists = {k: [x for x in v for _ in range(n)] for k, v in lists.items()}
    skipped = sum(s.get("skipped", 0) for s in samples)
    return VideoTextBatch(video=video, **fields, **lists, skipped=skipped, num_clips=n)
