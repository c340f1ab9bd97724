"""DiDeMo (LocalizingMoments ``*_data.json``) and LSMDC (retrieval, multiple choice, fill-in-the-blank)."""

from __future__ import annotations

import random
import re
from collections import Counter
from typing import Literal

from violetv2.data.readers._common import (
    AnnotationError,
    PathLike,
    clean_text,
    header_rows,
    load_json_list,
    read_lines,
    register,
    require,
    split_fields,
    to_int,
)
from violetv2.data.records import Record

__all__ = [
    "DIDEMO_CHUNK_SECONDS",
    "didemo_stem",
    "lsmdc_video",
    "read_didemo_json",
    "read_lsmdc_annos_csv",
    "read_lsmdc_fib_csv",
    "read_lsmdc_mc_csv",
]

#: DiDeMo ``times`` count 5-second chunks.
DIDEMO_CHUNK_SECONDS = 5.0


def didemo_stem(name: str) -> str:
    """A DiDeMo video name without its extension; names ending in a bare ``.`` just lose the dot."""
    return name[: name.rindex(".")] if "." in name else name


@register("didemo_json")
def read_didemo_json(
    path: PathLike, mode: Literal["paragraph", "moment"] = "paragraph", strip_extension: bool = False
) -> list[Record]:
    """Read LocalizingMoments ``{train,val,test}_data.json``.

    Items: ``{"num_segments": 5|6, "description", "dl_link", "times": [[s, e], ...], "video",
    "annotation_id"}``; ``times`` are 0-based 5-second chunk pairs, one per annotator (usually 4,
    sometimes 5 or 7). Video names are kept as written: extensions vary (.mov .avi .mp4 .m4v .3gp ...)
    and some names end in a bare ``.`` (no extension), exactly as the CE split lists spell them.

    Args:
        path: The JSON file.
        mode: ``"paragraph"``: one ``retrieval`` record per video whose text is all its descriptions
            joined with a space in file (annotation) order, each also in ``captions``;
            ``"moment"``: one record per description with ``start``/``end`` in seconds from the most
            frequent annotator pair (ties: the earliest listed), ``end`` = (last chunk + 1) * 5 s.
        strip_extension: Give ``video`` without extension (see :func:`didemo_stem`), for videos that were
            re-encoded to one container.
    """
    if mode not in ("paragraph", "moment"):
        raise ValueError(f"mode must be 'paragraph' or 'moment', got {mode!r}")
    moments = [_didemo_item(path, i, item) for i, item in enumerate(load_json_list(path))]
    if strip_extension:
        moments = [(i, didemo_stem(v), d, t) for i, v, d, t in moments]
    if mode == "moment":
        return [_moment_record(path, *m) for m in moments]
    by_video: dict[str, list[tuple[int, str]]] = {}
    for i, video, desc, _ in moments:
        by_video.setdefault(video, []).append((i, desc))
    return [
        Record(video, video, " ".join(d for _, d in items), "retrieval", captions=[d for _, d in items],
               source=f"{path}:[{items[0][0]}]")
        for video, items in by_video.items()
    ]  # fmt: skip


def _didemo_item(path: PathLike, i: int, item: object) -> tuple[int, str, str, list[tuple[int, int]]]:
    where = f"record {i}"
    video = require(path, where, item, "video", str)
    desc = clean_text(require(path, where, item, "description", str))
    segments = require(path, where, item, "num_segments", int)
    times = require(path, where, item, "times", list)
    if segments not in (5, 6):
        raise AnnotationError(path, where, f"num_segments must be 5 or 6, found {segments}")
    if not desc or not times:
        raise AnnotationError(path, where, "empty description or times")
    pairs = []
    for pair in times:
        ok = isinstance(pair, list) and len(pair) == 2 and all(type(x) is int for x in pair)
        if not ok or not 0 <= pair[0] <= pair[1] < segments:
            raise AnnotationError(path, where, f"bad times pair {pair!r} for {segments} segments")
        pairs.append((pair[0], pair[1]))
    return i, video, desc, pairs


def _moment_record(path: PathLike, i: int, video: str, desc: str, pairs: list[tuple[int, int]]) -> Record:
    first, _ = Counter(pairs).most_common(1)[0]  # Counter keeps first-seen order among ties
    return Record(
        f"{video}#{i}", video, desc, "retrieval", captions=[desc],
        start=first[0] * DIDEMO_CHUNK_SECONDS, end=(first[1] + 1) * DIDEMO_CHUNK_SECONDS, source=f"{path}:[{i}]",
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------- LSMDC
_STAMP = re.compile(r"^\d{2}\.\d{2}\.\d{2}\.\d{3}$")


def lsmdc_video(clip_id: str, movie_dirs: bool = False, video_ext: str = "") -> str:
    """File name of an LSMDC clip: ``{clip_id}{ext}``, or ``{movie}/{clip_id}{ext}`` where ``movie`` is the
    clip id without its trailing ``_<start>-<end>`` (the layout of the released clip folders)."""
    name = f"{clip_id}{video_ext}"
    return f"{clip_id.rsplit('_', 1)[0]}/{name}" if movie_dirs else name


def _lsmdc_rows(path: PathLike, counts: tuple[int, ...]) -> list[tuple[int, list[str]]]:
    """Tab-separated rows (no header, no quoting) with their 4 ``hh.mm.ss.mmm`` stamps checked."""
    rows = []
    for line, text in read_lines(path):
        fields = split_fields(path, line, text.rstrip("\r\n"), "\t", counts)
        for stamp in fields[1:5]:
            if not _STAMP.match(stamp.strip()):
                raise AnnotationError(path, line, f"time-stamp must be hh.mm.ss.mmm, found {stamp!r}")
        rows.append((line, [f.strip() for f in fields]))
    return rows


@register("lsmdc_annos_csv")
def read_lsmdc_annos_csv(
    path: PathLike, movie_dirs: bool = False, video_ext: str = "", blind: bool = False
) -> list[Record]:
    """Read ``LSMDC16_annos_{training,val,test}.csv`` / ``LSMDC16_challenge_1000_publictect.csv``.

    Official layout (LSMDC 2016 README): tab-separated, no header, ``CLIP_ID, START_ALIGNED,
    END_ALIGNED, START_EXTRACTED, END_EXTRACTED, SENTENCE``; stamps ``hh.mm.ss.mmm``. The clip files are
    already cut, so ``start``/``end`` stay ``None``. CLIP_ID is not unique, so ``sample_id`` is
    ``{clip_id}#{k}`` (k-th sentence of that clip). Character names mostly read "SOMEONE" (kept).

    Args:
        path: The CSV file.
        movie_dirs: ``video`` as ``{movie}/{clip_id}`` (see :func:`lsmdc_video`).
        video_ext: Extension appended to ``video`` (e.g. ``.avi``).
        blind: The blind test file has 5 columns (no sentence); records then have empty text.
    """
    records = []
    count: dict[str, int] = {}
    for line, f in _lsmdc_rows(path, 5 if blind else 6):
        text = "" if blind else clean_text(f[5])
        if not blind and not text:
            raise AnnotationError(path, line, "empty sentence")
        k = count.get(f[0], 0)
        count[f[0]] = k + 1
        video = lsmdc_video(f[0], movie_dirs, video_ext)
        records.append(
            Record(f"{f[0]}#{k}", video, text, "retrieval", captions=[text], source=f"{path}:{line}")
        )
    return records


@register("lsmdc_mc_csv")
def read_lsmdc_mc_csv(
    path: PathLike, shuffle_seed: int | None = None, movie_dirs: bool = False, video_ext: str = ""
) -> list[Record]:
    """Read ``LSMDC16_multiple_choice_{train,valid,test_randomized}.csv`` (official LSMDC 2016 layout).

    train/valid: 5 clip columns, then CORRECT_SENTENCE and DISTRACTOR1..4 (10 columns): options in file
    order, ``label`` 0. test_randomized: 5 clip columns, SENTENCE1..5 and ANSWER_INDEX (1-based, 1..5;
    11 columns): ``label`` = ANSWER_INDEX - 1. Each file must use one of the two layouts throughout.

    Args:
        path: The CSV file.
        shuffle_seed: If set, the options of each record are permuted by a generator seeded with
            ``(shuffle_seed, sample_id)`` (same result on every run and worker) and ``label`` follows.
        movie_dirs: ``video`` as ``{movie}/{clip_id}`` (see :func:`lsmdc_video`).
        video_ext: Extension appended to ``video``.
    """
    rows = _lsmdc_rows(path, (10, 11))
    width = len(rows[0][1]) if rows else 10
    records = []
    count: dict[str, int] = {}
    for line, f in rows:
        if len(f) != width:
            raise AnnotationError(path, line, f"{len(f)} columns, but the file's first row has {width}")
        label = 0 if width == 10 else to_int(path, line, f[10], "ANSWER_INDEX") - 1
        if not 0 <= label < 5:
            raise AnnotationError(path, line, f"ANSWER_INDEX must be 1..5, found {f[10]!r}")
        options = [clean_text(s) for s in f[5:10]]
        k = count.get(f[0], 0)
        count[f[0]] = k + 1
        sample_id = f"{f[0]}#{k}"
        if shuffle_seed is not None:
            order = list(range(5))
            random.Random(f"{shuffle_seed}/{sample_id}").shuffle(order)
            options, label = [options[j] for j in order], order.index(label)
        video = lsmdc_video(f[0], movie_dirs, video_ext)
        records.append(
            Record(sample_id, video, "", "multiple_choice", options, label, source=f"{path}:{line}")
        )
    return records


@register("lsmdc_fib_csv")
def read_lsmdc_fib_csv(path: PathLike, blank: str = "_____") -> list[Record]:
    """Read LSMDC fill-in-the-blank in the JSFusion DataFrame layout ``LSMDC16_FIB_{train,val,test}.csv``.

    Verified from JSFusion's loader (github yj-yu/lsmdc, which reads it with ``sep='\\t'``), not from a
    copy of the file: tab-separated with a header holding ``key``, ``vid_key``, ``blank_sentence``
    (the sentence with the blank written as ``_____``) and ``answer`` (the missing word). The official
    MovieFIB release layout could not be checked and is not supported. ``text`` keeps the blank as written.

    Args:
        path: The CSV file.
        blank: The blank marker every ``blank_sentence`` must contain.
    """
    records = []
    for line, row in header_rows(path, ["key", "vid_key", "blank_sentence", "answer"], delimiter="\t"):
        text, answer = clean_text(row["blank_sentence"]), row["answer"].strip()
        if blank not in text:
            raise AnnotationError(path, line, f"blank_sentence has no {blank!r}: {text!r}")
        if not answer:
            raise AnnotationError(path, line, "empty answer")
        video = row["vid_key"].strip()
        records.append(
            Record(row["key"].strip(), video, text, "fill_blank", answer=answer, source=f"{path}:{line}")
        )
    return records
