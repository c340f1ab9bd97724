"""Pre-training corpora: WebVid (``results_*.csv``) and Conceptual Captions 3M (``*.tsv``)."""

from __future__ import annotations

from typing import Literal

from violetv2.data.readers._common import (
    AnnotationError,
    PathLike,
    clean_text,
    header_rows,
    parse_iso8601_duration,
    physical_lines,
    register,
    split_fields,
)
from violetv2.data.records import Record

__all__ = ["CC3M_TRAIN_SIZE", "read_cc3m_tsv", "read_webvid_csv"]

#: Lines in ``Train_GCC-training.tsv``; VIOLET numbers the validation images after them (``03318333`` = val 0).
CC3M_TRAIN_SIZE = 3_318_333


@register("webvid_csv")
def read_webvid_csv(
    path: PathLike, video_layout: Literal["page_dir", "flat"] = "page_dir", video_ext: str = ".mp4"
) -> list[Record]:
    """Read a WebVid ``results_{2M,10M}_{train,val}.csv`` (one record per video).

    Columns are found by header name, so both published orders work: 10M
    ``videoid,contentUrl,duration,page_dir,name`` and 2M ``videoid,name,page_idx,page_dir,duration,contentUrl``.
    Quoted captions may span lines (embedded LF or CRLF): every whitespace run, line breaks included,
    becomes one space and the ends are stripped; non-ASCII text is kept. ``duration`` (ISO-8601,
    ``PT00H00M30S``) is validated; :class:`Record` has no duration field, so it is not stored.

    Args:
        path: The CSV file.
        video_layout: ``"page_dir"``: video file ``{page_dir}/{videoid}.mp4``, as the WebVid downloader
            lays the files out; ``"flat"``: ``{videoid}.mp4`` in one folder.
        video_ext: Extension of the video files.

    Returns:
        One ``caption`` record per row; ``sample_id`` is the videoid.
    """
    if video_layout not in ("page_dir", "flat"):
        raise ValueError(f"video_layout must be 'page_dir' or 'flat', got {video_layout!r}")
    records = []
    for line, row in header_rows(path, ["videoid", "name", "page_dir", "duration"]):
        vid = row["videoid"].strip()
        text = clean_text(row["name"])
        if not vid or not text:
            raise AnnotationError(path, line, f"empty videoid or caption in {row}")
        try:
            parse_iso8601_duration(row["duration"])
        except ValueError as err:
            raise AnnotationError(path, line, str(err)) from None
        video = (
            f"{vid}{video_ext}" if video_layout == "flat" else f"{row['page_dir'].strip()}/{vid}{video_ext}"
        )
        records.append(Record(vid, video, text, captions=[text], source=f"{path}:{line}"))
    return records


@register("cc3m_tsv")
def read_cc3m_tsv(
    path: PathLike,
    id_offset: int = 0,
    image_ext: str = ".jpg",
    image_map: dict[str, str] | None = None,
    skip_unmapped: bool = False,
) -> list[Record]:
    """Read a Conceptual Captions ``caption<TAB>url`` file (no header, no quoting); ``is_image=True``.

    Lines are split on the tab only (quotes are literal text, as the file has no quoting convention).

    The id of line ``i`` (0-based) is ``f"{i + id_offset:08d}"``, VIOLET's ``txt_cc3m.json`` ids: use
    ``id_offset=0`` for ``Train_GCC-training.tsv`` and ``id_offset=CC3M_TRAIN_SIZE`` for
    ``Validation_GCC-1.1.0-Validation.tsv`` (its first line is VIOLET's ``03318333``).

    Args:
        path: The TSV file.
        id_offset: Added to the 0-based line index to form the id.
        image_ext: The image file is ``{id}{image_ext}`` unless ``image_map`` is given.
        image_map: Optional ``{id or url: image path}`` from your downloader; it overrides ``image_ext``.
        skip_unmapped: With ``image_map``, leave out lines whose image is not in the map (images that
            failed to download) instead of raising. This is the reader's only filter.

    Returns:
        One ``caption`` record per line.
    """
    records = []
    for index, text in enumerate(physical_lines(path)):
        line = index + 1
        caption, url = (clean_text(f) for f in split_fields(path, line, text, "\t", 2))
        if not caption or not url:
            raise AnnotationError(
                path, line, "empty caption or url (a blank line would shift every id after it)"
            )
        sample_id = f"{index + id_offset:08d}"
        if image_map is None:
            image = f"{sample_id}{image_ext}"
        else:
            image = image_map.get(sample_id, image_map.get(url))
            if image is None and skip_unmapped:
                continue
            if image is None:
                raise AnnotationError(path, line, f"image {sample_id} ({url}) is not in image_map")
        records.append(
            Record(sample_id, image, caption, captions=[caption], is_image=True, source=f"{path}:{line}")
        )
    return records
