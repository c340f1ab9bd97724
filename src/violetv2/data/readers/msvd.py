"""MSVD: the ``vid<N>`` -> YouTube-clip mapping, MSVD-QA (xudejing) and the caption corpus."""

from __future__ import annotations

import re

from violetv2.data.readers._common import (
    AnnotationError,
    PathLike,
    clean_text,
    header_rows,
    physical_lines,
    read_lines,
    register,
)
from violetv2.data.readers.msrvtt import read_video_list, xudejing_qa_records
from violetv2.data.records import Record

__all__ = ["read_msvd_corpus_csv", "read_msvd_descriptions_txt", "read_msvd_qa_json", "read_youtube_mapping"]

_CLIP = re.compile(r"^(\S+)_(\d+)_(\d+)$")


def read_youtube_mapping(path: PathLike) -> dict[int, str]:
    """Read ``youtube_mapping.txt``: lines ``<youtubeId>_<start>_<end> vid<N>`` (space-separated).

    Handles CRLF or LF, no newline after the last line, and YouTube ids beginning with ``-``.

    Returns:
        ``{N: "<youtubeId>_<start>_<end>"}``.
    """
    mapping: dict[int, str] = {}
    for line, text in read_lines(path):
        parts = text.split()
        if len(parts) != 2 or not _CLIP.match(parts[0]) or not re.fullmatch(r"vid\d+", parts[1]):
            raise AnnotationError(path, line, f"expected '<youtubeId>_<start>_<end> vid<N>', found {text!r}")
        num = int(parts[1][3:])
        if num in mapping:
            raise AnnotationError(path, line, f"duplicate {parts[1]}")
        mapping[num] = parts[0]
    if not mapping:
        raise AnnotationError(path, None, "empty mapping")
    return mapping


@register("msvd_qa_json")
def read_msvd_qa_json(path: PathLike, youtube_mapping: PathLike | None = None) -> list[Record]:
    """Read MSVD-QA ``{train,val,test}_qa.json`` (xudejing; ``/`` escaped as ``\\/``, no final newline).

    Args:
        path: The QA file.
        youtube_mapping: ``youtube_mapping.txt``; with it ``video`` is the clip name
            (``-4wsuPCjDBc_5_15``), without it ``vid<N>``.
    """
    names = read_youtube_mapping(youtube_mapping) if youtube_mapping is not None else "vid{}"
    return xudejing_qa_records(path, names)


@register("msvd_descriptions_txt")
def read_msvd_descriptions_txt(
    path: PathLike, header_lines: int = 7, video_list: PathLike | None = None
) -> list[Record]:
    """Read ``AllVideoDescriptions.txt`` (UT Austin release): ``<youtubeId>_<start>_<end> <description>``.

    The published file opens with a 7-line header, which its consumers skip by count (seen in several
    public loaders; the header text itself was not available to check). Every following non-blank line
    must start with a clip name, so a wrong ``header_lines`` fails loudly.

    Args:
        path: The text file.
        header_lines: Leading lines to skip.
        video_list: Optional CE split list; only its clips are kept (a documented filter).

    Returns:
        One ``caption`` record per description, ``sample_id`` ``{clip}#{k}`` (k-th description of the clip).
    """
    keep = set(read_video_list(video_list)) if video_list is not None else None
    lines = physical_lines(path)
    records: list[Record] = []
    count: dict[str, int] = {}
    for line, text in enumerate(lines[header_lines:], start=header_lines + 1):
        if not text.strip():
            continue
        clip, _, desc = text.strip().partition(" ")
        if not _CLIP.match(clip) or not desc.strip():
            raise AnnotationError(
                path, line, f"expected '<youtubeId>_<start>_<end> <description>', found {text!r}"
            )
        if keep is None or clip in keep:
            records.append(_caption(path, line, clip, desc, count))
    return records


def _caption(path: PathLike, line: int, clip: str, desc: str, count: dict[str, int]) -> Record:
    k = count.get(clip, 0)
    count[clip] = k + 1
    text = clean_text(desc)
    return Record(f"{clip}#{k}", clip, text, captions=[text], source=f"{path}:{line}")


@register("msvd_corpus_csv")
def read_msvd_corpus_csv(
    path: PathLike, language: str | None = "English", video_list: PathLike | None = None
) -> list[Record]:
    """Read ``MSR Video Description Corpus.csv`` / ``video_corpus.csv``.

    Header ``VideoID,Start,End,WorkerID,Source,AnnotationTime,Language,Description`` (comma-separated,
    quoted where needed). The clip name is ``{VideoID}_{Start}_{End}``. Rows of other languages are left
    out when ``language`` is set (a documented filter: the corpus is multilingual); an empty description
    in a kept row raises.

    Args:
        path: The CSV file.
        language: Keep rows whose ``Language`` equals this; ``None`` keeps all.
        video_list: Optional CE split list of clip names to keep.
    """
    keep = set(read_video_list(video_list)) if video_list is not None else None
    records: list[Record] = []
    count: dict[str, int] = {}
    cols = ["VideoID", "Start", "End", "Language", "Description"]
    for line, row in header_rows(path, cols):
        if language is not None and row["Language"].strip() != language:
            continue
        clip = f"{row['VideoID'].strip()}_{row['Start'].strip()}_{row['End'].strip()}"
        if not _CLIP.match(clip):
            raise AnnotationError(path, line, f"bad VideoID/Start/End giving clip {clip!r}")
        if not row["Description"].strip():
            raise AnnotationError(path, line, f"empty Description for {clip}")
        if keep is None or clip in keep:
            records.append(_caption(path, line, clip, row["Description"], count))
    return records
