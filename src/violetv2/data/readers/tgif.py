"""TGIF-QA (YunseokJANG/tgif-qa ``dataset/*_question.csv``): Action, Transition, FrameQA, Count."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from violetv2.data.readers._common import (
    AnnotationError,
    PathLike,
    clean_text,
    csv_rows,
    register,
    to_int,
)
from violetv2.data.records import Record

__all__ = ["TGIF_COLUMNS", "read_tgif_qa_csv"]

TgifTask = Literal["action", "transition", "frameqa", "count"]

#: Header of each task's file (tab-separated despite the ``.csv`` name).
TGIF_COLUMNS: dict[str, list[str]] = {
    "action": ["gif_name", "question", "a1", "a2", "a3", "a4", "a5", "answer", "vid_id", "key"],
    "transition": ["gif_name", "question", "a1", "a2", "a3", "a4", "a5", "answer", "vid_id", "key"],
    "count": ["gif_name", "question", "answer", "vid_id", "key"],
    "frameqa": ["gif_name", "question", "answer", "type", "vid_id", "key", "description"],
}


@register("tgif_qa_csv")
def read_tgif_qa_csv(path: PathLike, task: TgifTask | None = None) -> list[Record]:
    """Read a TGIF-QA ``{Train,Test}_{action,transition,frameqa,count}_question.csv``.

    Tab-separated with a header, CRLF line ends. A few rows quote fields CSV-style with doubled quotes
    (a field ``respond "no"`` written quoted with its inner quotes doubled); they are unquoted like the
    ``csv`` module / pandas do.

    * action / transition: ``multiple_choice``, ``options`` = a1..a5, ``label`` = ``answer`` (0-based).
    * count: ``open_qa``, ``answer`` = the count as text (checked to be an integer).
    * frameqa: ``open_qa``, ``answer`` = the word; the source caption (``description``) goes to ``captions``.

    ``sample_id`` is ``vid_id`` (``ACTION4``, ``TRANS15831``, ``COUNT12``, ``FRAMEQA1159``); ``video`` is
    ``gif_name``.

    Args:
        path: The file.
        task: Which task the file must be; ``None`` infers it from the header (action and transition
            share a header and are both read as multiple choice).
    """
    rows = csv_rows(path, delimiter="\t")
    first = next(rows, None)
    if first is None:
        raise AnnotationError(path, 1, "no header line")
    header = [h.strip() for h in first[1]]
    task = task or _infer_task(path, header)
    if header != TGIF_COLUMNS[task]:
        raise AnnotationError(
            path, first[0], f"header {header} is not the TGIF-QA {task} header {TGIF_COLUMNS[task]}"
        )
    records = []
    for line, row in rows:
        if len(row) != len(header):
            raise AnnotationError(path, line, f"expected {len(header)} columns {header}, found {len(row)}")
        records.append(_tgif_record(path, line, task, dict(zip(header, row))))
    return records


def _infer_task(path: PathLike, header: list[str]) -> TgifTask:
    for name, cols in TGIF_COLUMNS.items():
        if header == cols:
            return name  # type: ignore[return-value]
    raise AnnotationError(path, 1, f"header {header} matches no TGIF-QA task")


def _tgif_record(path: PathLike, line: int, task: TgifTask, row: dict[str, str]) -> Record:
    question, src = clean_text(row["question"]), f"{path}:{line}"
    sample_id, video = row["vid_id"].strip(), row["gif_name"].strip()
    if not question or not video:
        raise AnnotationError(path, line, "empty question or gif_name")
    if task in ("action", "transition"):
        label = to_int(path, line, row["answer"], "answer")
        if not 0 <= label < 5:
            raise AnnotationError(path, line, f"answer must be an option index 0..4, found {label}")
        options = [clean_text(row[f"a{k}"]) for k in range(1, 6)]
        return Record(sample_id, video, question, "multiple_choice", options, label, source=src)
    if task == "count":
        count = to_int(path, line, row["answer"], "answer (count)")
        return Record(sample_id, video, question, "open_qa", answer=str(count), source=src)
    answer = row["answer"].strip()
    if not answer:
        raise AnnotationError(path, line, "empty answer")
    desc = clean_text(row["description"])
    return Record(sample_id, video, question, "open_qa", answer=answer, captions=[desc], source=src)


def _task_reader(task: TgifTask) -> Callable[[PathLike], list[Record]]:
    def read(path: PathLike) -> list[Record]:
        return read_tgif_qa_csv(path, task)

    read.__doc__ = f"Read a TGIF-QA {task} file (see :func:`read_tgif_qa_csv`)."
    return read


for _task in ("action", "transition", "frameqa", "count"):
    register(f"tgif_{_task}_csv")(_task_reader(_task))  # type: ignore[arg-type]
