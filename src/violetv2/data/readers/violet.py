"""The public VIOLET / VIOLETv2 release layout: ``txt_*.json`` annotations and the frame stores.

Frame stores (facts read from tsujuifu/pytorch_violet ``_tools/`` and tsujuifu/pytorch_empirical-mvm):

* ``img_*.tsv`` + ``img_*.lineidx``: each TSV line is ``<id>\\t<base64 JPEG>\\t<base64 JPEG>...\\n``;
  the ``.lineidx`` file holds the byte offset of every TSV line, one decimal number per line.
  The empirical-mvm downstream stores put one extra column between the id and the frames (they slice
  the fields from 2), hence ``frame_column``.
* ``img_*.id2lineidx.pkl``: ``{id: byte offset}`` of the TSV line of each video (empirical-mvm).
* ``img_*.pkl`` (VIOLET v1): a pickle ``{video_id: [base64 JPEG str, ...]}``, read here only through
  :func:`violetv2.data.safe_pickle.load`.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import IO, Any

from violetv2.data import safe_pickle
from violetv2.data.readers._common import (
    AnnotationError,
    PathLike,
    clean_text,
    load_json,
    read_lines,
    register,
    require,
)
from violetv2.data.records import Record

__all__ = ["PklFrameStore", "TsvFrameStore", "read_violet_txt_json"]


@register("violet_txt_json")
def read_violet_txt_json(path: PathLike, split: str, is_image: bool = False) -> list[Record]:
    """Read a VIOLET ``txt_<task>.json``: ``{split: ...}``, keeping only the requested split.

    The item layout decides the task:

    * ``{id: [caption, ...]}`` (``txt_cc3m.json``, ``txt_webvid2.5m.json``): one ``caption`` record per
      id, ``text`` the first caption, all in ``captions``; ``video`` = id.
    * ``[{"video", "caption"}]`` (retrieval): ``retrieval`` records.
    * ``[{"video", "question", "option_0".."option_4", "answer": int}]`` (TGIF action/transition,
      MSRVTT-MC...): ``multiple_choice`` with ``label`` = answer.
    * ``[{"video", "question", "answer": int}]`` with a top-level ``vocab`` list (``txt_msvd-qa.json``):
      ``open_qa`` with ``label`` = answer and ``answer`` = ``vocab[answer]``.
    * ``[{"video", "question", "answer": str}]``: ``open_qa``.

    Args:
        path: The JSON file.
        split: ``"train"``, ``"val"`` or ``"test"`` (whatever keys the file has besides ``vocab``).
        is_image: Mark records as still images (``txt_cc3m.json``).
    """
    data = load_json(path)
    if not isinstance(data, dict):
        raise AnnotationError(path, None, f"expected a JSON object of splits, found {type(data).__name__}")
    splits = [k for k in data if k != "vocab"]
    if split not in splits:
        raise AnnotationError(path, None, f"no split {split!r}; the file has {splits}")
    items = data[split]
    if isinstance(items, dict):
        return [_caption_record(path, split, vid, caps, is_image) for vid, caps in items.items()]
    if not isinstance(items, list):
        raise AnnotationError(path, split, f"split must be a list or an object, found {type(items).__name__}")
    vocab = data.get("vocab")
    if vocab is not None and not (isinstance(vocab, list) and all(isinstance(v, str) for v in vocab)):
        raise AnnotationError(path, "vocab", "vocab must be a list of strings")
    return [_item_record(path, f"{split}[{i}]", item, vocab, is_image) for i, item in enumerate(items)]


def _caption_record(path: PathLike, split: str, vid: str, caps: Any, is_image: bool) -> Record:
    where = f"{split}[{vid!r}]"
    if not isinstance(caps, list) or not caps or not all(isinstance(c, str) for c in caps):
        raise AnnotationError(path, where, f"expected a non-empty list of captions, found {caps!r}")
    texts = [clean_text(c) for c in caps]
    return Record(vid, vid, texts[0], captions=texts, is_image=is_image, source=f"{path}:{where}")


def _item_record(path: PathLike, where: str, item: Any, vocab: list[str] | None, is_image: bool) -> Record:
    video = require(path, where, item, "video", str)
    src, sid = f"{path}:{where}", where.split("[", 1)[1].rstrip("]")
    if "caption" in item:
        text = clean_text(require(path, where, item, "caption", str))
        return Record(sid, video, text, "retrieval", captions=[text], is_image=is_image, source=src)
    question = clean_text(require(path, where, item, "question", str))
    if "option_0" in item:
        options = [
            clean_text(require(path, where, item, f"option_{k}", str)) for k in range(_n_options(item))
        ]
        label = require(path, where, item, "answer", int)
        if not 0 <= label < len(options):
            raise AnnotationError(path, where, f"answer {label} is not an index into {len(options)} options")
        return Record(sid, video, question, "multiple_choice", options, label, is_image=is_image, source=src)
    answer = require(path, where, item, "answer", (int, str))
    if isinstance(answer, str):
        return Record(sid, video, question, "open_qa", answer=answer, is_image=is_image, source=src)
    if vocab is None or not 0 <= answer < len(vocab):
        size = "no vocab" if vocab is None else f"a vocab of {len(vocab)}"
        raise AnnotationError(path, where, f"answer index {answer} does not fit {size}")
    return Record(
        sid, video, question, "open_qa", label=answer, answer=vocab[answer], is_image=is_image, source=src
    )


def _n_options(item: dict[str, Any]) -> int:
    n = 0
    while f"option_{n}" in item:
        n += 1
    return n


# ------------------------------------------------------------------------------------------ frame stores
_JPEG_SOI = b"\xff\xd8"


def _b64_frames(where: str, fields: list[Any]) -> list[bytes]:
    """Decode base64 frames; ``bytes`` that already start with the JPEG marker are returned as they are."""
    frames = []
    for k, field in enumerate(fields):
        if isinstance(field, bytes) and field.startswith(_JPEG_SOI):
            frames.append(field)
            continue
        try:
            frames.append(base64.b64decode(field.strip(), validate=True))
        except (binascii.Error, TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"{where}: frame {k} is not valid base64 ({err})") from None
    return frames


class TsvFrameStore:
    """Random access to the JPEG frames of a VIOLET ``img_*.tsv`` by video id.

    The file is opened lazily in each process, so a store can be handed to DataLoader workers.

    Args:
        path: The ``.tsv`` file.
        lineidx: Byte offsets, one per line; default ``<path without .tsv>.lineidx``. Ignored when
            ``id2lineidx`` is given.
        id2lineidx: Optional ``{id: byte offset}`` table (``.pkl`` read with the safe unpickler, or
            ``.json``); without it the id of every line is read once at construction.
        frame_column: Index of the first frame field (1 for VIOLET v1 / pre-training stores, 2 for the
            empirical-mvm downstream stores).
    """

    def __init__(
        self,
        path: PathLike,
        lineidx: PathLike | None = None,
        id2lineidx: PathLike | None = None,
        frame_column: int = 1,
    ) -> None:
        self.path = Path(path)
        self.frame_column = frame_column
        self._file: IO[bytes] | None = None
        if not self.path.is_file():
            raise AnnotationError(self.path, None, "no such frame store")
        if id2lineidx is not None:
            self.offsets = _load_id2lineidx(id2lineidx)
        else:
            self.offsets = self._scan_ids(Path(lineidx) if lineidx else self.path.with_suffix(".lineidx"))

    def _scan_ids(self, lineidx: Path) -> dict[str, int]:
        offsets: dict[str, int] = {}
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            for line, text in read_lines(lineidx):
                if not text.strip().isdigit() or int(text) >= size:
                    raise AnnotationError(
                        lineidx, line, f"expected a byte offset below {size}, found {text!r}"
                    )
                vid = self._read_id(f, int(text))
                if vid in offsets:
                    raise AnnotationError(lineidx, line, f"duplicate video id {vid!r} in {self.path}")
                offsets[vid] = int(text)
        return offsets

    def _read_id(self, f: IO[bytes], offset: int) -> str:
        f.seek(offset)
        head = b""
        while b"\t" not in head and b"\n" not in head:
            chunk = f.read(256)
            if not chunk:
                break
            head += chunk
        return head.split(b"\t", 1)[0].split(b"\n", 1)[0].decode("utf-8")

    def __contains__(self, video_id: object) -> bool:
        return video_id in self.offsets

    def __len__(self) -> int:
        return len(self.offsets)

    def keys(self) -> list[str]:
        """Video ids in the store."""
        return list(self.offsets)

    def __getitem__(self, video_id: str) -> list[bytes]:
        """JPEG bytes of every frame of ``video_id`` (``KeyError`` if absent)."""
        offset = self.offsets[video_id]
        if self._file is None:
            self._file = open(self.path, "rb")  # kept open for random access
        self._file.seek(offset)
        fields = self._file.readline().rstrip(b"\r\n").split(b"\t")
        where = f"{self.path} at byte {offset}"
        if fields[0].decode("utf-8", "replace") != video_id:
            raise AnnotationError(
                self.path, f"byte {offset}", f"line holds id {fields[0]!r}, not {video_id!r}"
            )
        try:
            return _b64_frames(where, fields[self.frame_column :])
        except ValueError as err:
            raise AnnotationError(self.path, f"byte {offset}", str(err)) from None

    def close(self) -> None:
        """Close the open file handle (reopened on the next access)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_file": None}


def _load_id2lineidx(path: PathLike) -> dict[str, int]:
    table = load_json(path) if os.fspath(path).endswith(".json") else safe_pickle.load(path)
    if not isinstance(table, dict) or not all(isinstance(v, int) and v >= 0 for v in table.values()):
        raise AnnotationError(path, None, "id2lineidx must map video ids to non-negative byte offsets")
    return {str(k): v for k, v in table.items()}


class PklFrameStore:
    """The frames of a VIOLET v1 ``img_*.pkl`` (``{video_id: [base64 JPEG, ...]}``), decoded on access.

    Loaded with :func:`violetv2.data.safe_pickle.load`: a pickle naming any class or function raises
    :class:`~violetv2.data.safe_pickle.UnsafePickleError` instead of running it.

    Args:
        path: The ``.pkl`` file.
    """

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        data = safe_pickle.load(self.path)
        if not isinstance(data, dict):
            raise AnnotationError(
                self.path, None, f"expected a dict of video id -> frames, found {type(data).__name__}"
            )
        for vid, frames in data.items():
            if not isinstance(vid, str) or not isinstance(frames, list) or not frames:
                raise AnnotationError(
                    self.path, f"key {vid!r}", "expected a str id and a non-empty list of frames"
                )
        self._data: dict[str, list[str | bytes]] = data

    def __contains__(self, video_id: object) -> bool:
        return video_id in self._data

    def __len__(self) -> int:
        return len(self._data)

    def keys(self) -> list[str]:
        """Video ids in the store."""
        return list(self._data)

    def __getitem__(self, video_id: str) -> list[bytes]:
        """JPEG bytes of every frame of ``video_id`` (``KeyError`` if absent)."""
        try:
            return _b64_frames(f"{self.path} key {video_id!r}", self._data[video_id])
        except ValueError as err:
            raise AnnotationError(self.path, f"key {video_id!r}", str(err)) from None
