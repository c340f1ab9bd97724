"""Annotation readers for every benchmark's published file layout.

Every reader returns ``list[Record]`` and is registered by name in :data:`READERS`, so a config can say
``read_annotations("msrvtt_jsfusion_csv", path)``. A malformed file raises :class:`AnnotationError`
naming the file, the line (1-based) or record, and the fault, before any training starts.
"""

from __future__ import annotations

from typing import Any

from violetv2.data.readers._common import READERS, AnnotationError, PathLike, parse_iso8601_duration
from violetv2.data.readers.movies import (
    DIDEMO_CHUNK_SECONDS,
    didemo_stem,
    lsmdc_video,
    read_didemo_json,
    read_lsmdc_annos_csv,
    read_lsmdc_fib_csv,
    read_lsmdc_mc_csv,
)
from violetv2.data.readers.msrvtt import (
    read_msrvtt_data_json,
    read_msrvtt_jsfusion_csv,
    read_msrvtt_mc_csv,
    read_msrvtt_qa_json,
    read_msrvtt_split_csv,
    read_umt_ret_json,
    read_video_list,
)
from violetv2.data.readers.msvd import (
    read_msvd_corpus_csv,
    read_msvd_descriptions_txt,
    read_msvd_qa_json,
    read_youtube_mapping,
)
from violetv2.data.readers.pretrain import CC3M_TRAIN_SIZE, read_cc3m_tsv, read_webvid_csv
from violetv2.data.readers.tgif import TGIF_COLUMNS, read_tgif_qa_csv
from violetv2.data.readers.violet import PklFrameStore, TsvFrameStore, read_violet_txt_json
from violetv2.data.records import Record

__all__ = [
    "CC3M_TRAIN_SIZE",
    "DIDEMO_CHUNK_SECONDS",
    "READERS",
    "TGIF_COLUMNS",
    "AnnotationError",
    "PklFrameStore",
    "TsvFrameStore",
    "didemo_stem",
    "lsmdc_video",
    "parse_iso8601_duration",
    "read_annotations",
    "read_cc3m_tsv",
    "read_didemo_json",
    "read_lsmdc_annos_csv",
    "read_lsmdc_fib_csv",
    "read_lsmdc_mc_csv",
    "read_msrvtt_data_json",
    "read_msrvtt_jsfusion_csv",
    "read_msrvtt_mc_csv",
    "read_msrvtt_qa_json",
    "read_msrvtt_split_csv",
    "read_msvd_corpus_csv",
    "read_msvd_descriptions_txt",
    "read_msvd_qa_json",
    "read_tgif_qa_csv",
    "read_umt_ret_json",
    "read_video_list",
    "read_violet_txt_json",
    "read_webvid_csv",
    "read_youtube_mapping",
]


def read_annotations(format: str, path: PathLike, **kw: Any) -> list[Record]:
    """Read an annotation file with the reader registered as ``format``.

    Args:
        format: A key of :data:`READERS` (e.g. ``"webvid_csv"``, ``"msrvtt_jsfusion_csv"``, ``"tgif_qa_csv"``).
        path: The annotation file.
        **kw: Options of that reader (see its docstring).

    Returns:
        The records, in file order.

    Raises:
        ValueError: Unknown format (the message lists the known ones).
        AnnotationError: The file is missing, empty or malformed.
    """
    if format not in READERS:
        raise ValueError(f"unknown annotation format {format!r}; known formats: {sorted(READERS)}")
    return READERS[format](path, **kw)
