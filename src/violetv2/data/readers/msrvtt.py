"""MSRVTT: retrieval (CLIP4Clip csv/json, UMT json), multiple choice (JSFusion), QA (xudejing), CE split lists."""

from __future__ import annotations

import re

from violetv2.data.readers._common import (
    AnnotationError,
    PathLike,
    clean_text,
    header_rows,
    load_json,
    load_json_list,
    read_lines,
    register,
    require,
    to_int,
)
from violetv2.data.records import Record

__all__ = [
    "read_msrvtt_data_json",
    "read_msrvtt_jsfusion_csv",
    "read_msrvtt_mc_csv",
    "read_msrvtt_qa_json",
    "read_msrvtt_split_csv",
    "read_umt_ret_json",
    "read_video_list",
    "xudejing_qa_records",
]


def read_video_list(path: PathLike) -> list[str]:
    """Read a collaborative-experts split list (``*_list*.txt``): one video id / file name per line.

    LF or CRLF, with or without a final newline (several published lists have none); blank lines are
    ignored. Ids keep any trailing ``.`` (DiDeMo names without extension). Duplicates raise.
    """
    seen: dict[str, int] = {}
    for line, text in read_lines(path):
        vid = text.strip()
        if " " in vid or "\t" in vid:
            raise AnnotationError(path, line, f"expected one id per line, found {text!r}")
        if vid in seen:
            raise AnnotationError(path, line, f"duplicate id {vid!r} (first on line {seen[vid]})")
        seen[vid] = line
    if not seen:
        raise AnnotationError(path, None, "no ids in split list")
    return list(seen)


@register("msrvtt_jsfusion_csv")
def read_msrvtt_jsfusion_csv(path: PathLike) -> list[Record]:
    """Read CLIP4Clip's ``MSRVTT_JSFUSION_test.csv`` (1k-A test): ``key,vid_key,video_id,sentence``.

    One ``retrieval`` record per row; ``sample_id`` is ``key`` (``ret0``...), ``video`` is ``video_id``.
    """
    records = []
    for line, row in header_rows(path, ["key", "video_id", "sentence"]):
        text = clean_text(row["sentence"])
        if not text:
            raise AnnotationError(path, line, "empty sentence")
        vid = row["video_id"].strip()
        records.append(
            Record(row["key"].strip(), vid, text, "retrieval", captions=[text], source=f"{path}:{line}")
        )
    return records


@register("msrvtt_data_json")
def read_msrvtt_data_json(
    path: PathLike,
    split: str | None = None,
    video_ids: list[str] | None = None,
    video_list: PathLike | None = None,
    unfold: bool = True,
) -> list[Record]:
    """Read CLIP4Clip's ``MSRVTT_data.json`` ``{"info", "videos": [...], "sentences": [...]}``.

    ``videos`` items carry ``video_id``, ``split`` (``train``/``validate``/``test``), ``url``, ...;
    ``sentences`` items carry ``caption``, ``video_id``, ``sen_id``. The reader keeps only the videos of
    the chosen split / id list (a documented filter); a selected video without any caption raises.

    Args:
        path: ``MSRVTT_data.json``.
        split: Keep videos whose ``split`` field equals this (``None``: no split filter).
        video_ids: Keep only these video ids (e.g. from ``MSRVTT_train.9k.csv``), in their order.
        video_list: Same, read from a CE ``*_list*.txt`` file.
        unfold: ``True``: one ``retrieval`` record per caption (``sample_id`` ``{video}#{sen_id}``);
            ``False``: one record per video with every caption in ``captions`` and the first as ``text``.
    """
    data = load_json(path)
    videos = require(path, "top level", data, "videos", list)
    sentences = require(path, "top level", data, "sentences", list)
    by_video: dict[str, list[tuple[int, str, str]]] = {}
    for i, item in enumerate(sentences):
        where = f"sentences[{i}]"
        vid = require(path, where, item, "video_id", str)
        caption = clean_text(require(path, where, item, "caption", str))
        sen_id = str(item.get("sen_id", i))
        by_video.setdefault(vid, []).append((i, sen_id, caption))
    split_of = {
        require(path, f"videos[{i}]", v, "video_id", str): v.get("split") for i, v in enumerate(videos)
    }
    if video_list is not None:
        video_ids = read_video_list(video_list)
    wanted = video_ids if video_ids is not None else list(split_of)
    if split is not None:
        wanted = [v for v in wanted if split_of.get(v) == split]
    records = []
    for vid in wanted:
        if vid not in by_video:
            raise AnnotationError(path, None, f"video {vid!r} has no sentences")
        records.extend(_msrvtt_records(path, vid, by_video[vid], unfold))
    return records


def _msrvtt_records(path: PathLike, vid: str, caps: list[tuple[int, str, str]], unfold: bool) -> list[Record]:
    texts = [c for _, _, c in caps]
    if not unfold:
        return [
            Record(vid, vid, texts[0], "retrieval", captions=texts, source=f"{path}:sentences[{caps[0][0]}]")
        ]
    return [
        Record(f"{vid}#{sen}", vid, text, "retrieval", captions=[text], source=f"{path}:sentences[{i}]")
        for i, sen, text in caps
    ]


@register("msrvtt_split_csv")
def read_msrvtt_split_csv(path: PathLike, data_json: PathLike, unfold: bool = True) -> list[Record]:
    """Read a CLIP4Clip id list (``MSRVTT_train.9k.csv`` / ``.7k.csv``: header ``video_id``) joined with
    the captions of ``MSRVTT_data.json`` (see :func:`read_msrvtt_data_json` for ``unfold``)."""
    ids = [row["video_id"].strip() for _, row in header_rows(path, ["video_id"])]
    if not ids:
        raise AnnotationError(path, None, "no video ids")
    return read_msrvtt_data_json(data_json, video_ids=ids, unfold=unfold)


@register("umt_ret_json")
def read_umt_ret_json(path: PathLike, unfold: bool = True) -> list[Record]:
    """Read a UMT/VindLU ``*_ret_*.json``: array of ``{"video", "caption": str | [str], "duration"?}``.

    ``video`` is kept as written (e.g. ``video9770.mp4``). A list caption gives one record per caption
    with ``unfold=True`` (``sample_id`` ``{i}#{j}``), or one record holding them all with ``unfold=False``.
    """
    records = []
    for i, item in enumerate(load_json_list(path)):
        where = f"record {i}"
        video = require(path, where, item, "video", str)
        caption = require(path, where, item, "caption", (str, list))
        texts = [caption] if isinstance(caption, str) else caption
        if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            raise AnnotationError(
                path, where, f"caption must be a non-empty string or list of them: {caption!r}"
            )
        texts = [clean_text(t) for t in texts]
        src = f"{path}:[{i}]"
        if isinstance(caption, str) or not unfold:
            records.append(Record(str(i), video, texts[0], "retrieval", captions=texts, source=src))
        else:
            records.extend(
                Record(f"{i}#{j}", video, t, "retrieval", captions=[t], source=src)
                for j, t in enumerate(texts)
            )
    return records


_MSR_KEY = re.compile(r"^msr(\d+)$")


@register("msrvtt_mc_csv")
def read_msrvtt_mc_csv(path: PathLike) -> list[Record]:
    """Read JSFusion's ``MSR_MC_test.csv`` (MSRVTT multiple choice, 2,990 questions).

    Layout (JSFusion DataFrame, read by JSFusion / all-in-one with ``sep='\\t'``; confirmed from the
    readers' code, no copy of the file itself was available): **tab**-separated with a header holding
    ``key``, ``vid_key`` (``msr<N>``), ``a1``..``a5`` and ``answer`` (0-based index of the right
    option; JSFusion compares it with an ``argmax``). An optional ``video_id`` column is used when
    present; otherwise ``msr<N>`` becomes ``video<N>``.
    """
    records = []
    cols = ["key", "vid_key", "a1", "a2", "a3", "a4", "a5", "answer"]
    for line, row in header_rows(path, cols, delimiter="\t"):
        options = [clean_text(row[f"a{k}"]) for k in range(1, 6)]
        label = to_int(path, line, row["answer"], "answer")
        if not 0 <= label < 5:
            raise AnnotationError(path, line, f"answer must be an option index 0..4, found {label}")
        video = row.get("video_id", "").strip() or _msr_to_video(path, line, row["vid_key"].strip())
        records.append(
            Record(row["key"].strip(), video, "", "multiple_choice", options, label, source=f"{path}:{line}")
        )
    return records


def _msr_to_video(path: PathLike, line: int, key: str) -> str:
    match = _MSR_KEY.match(key)
    if not match:
        raise AnnotationError(path, line, f"vid_key must look like 'msr<N>', found {key!r}")
    return f"video{match.group(1)}"


def xudejing_qa_records(path: PathLike, video_name: dict[int, str] | str) -> list[Record]:
    """Records of a xudejing QA file: array of ``{"answer", "id", "question", "video_id": int}``.

    ``video_name`` maps the int id to a video name, or is a format string such as ``"video{}"``.
    JSON escapes like ``\\/`` are decoded by the JSON parser.
    """
    records = []
    for i, item in enumerate(load_json_list(path)):
        where = f"record {i}"
        answer = require(path, where, item, "answer", str)
        question = require(path, where, item, "question", str)
        qid = require(path, where, item, "id", int)
        num = require(path, where, item, "video_id", int)
        if isinstance(video_name, str):
            video = video_name.format(num)
        elif num in video_name:
            video = video_name[num]
        else:
            raise AnnotationError(path, where, f"video_id {num} is not in the youtube mapping")
        records.append(
            Record(
                str(qid),
                video,
                clean_text(question),
                "open_qa",
                answer=answer.strip(),
                source=f"{path}:[{i}]",
            )
        )
    return records


@register("msrvtt_qa_json")
def read_msrvtt_qa_json(path: PathLike) -> list[Record]:
    """Read MSRVTT-QA ``{train,val,test}_qa.json`` (xudejing): int ``video_id`` N -> video ``video<N>``."""
    return xudejing_qa_records(path, "video{}")
