"""What an annotation reader yields: one :class:`Record` per sample, whatever the benchmark's file layout."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Record", "Task"]

Task = Literal["caption", "retrieval", "multiple_choice", "open_qa", "fill_blank", "captioning"]


@dataclass
class Record:
    """One sample of any benchmark, independent of the file it was read from.

    Attributes:
        sample_id: Unique id within the split (the annotation's own key where it has one).
        video: Video id or relative file name as the annotation gives it (resolved against a video root by
            the dataset; for image-text data the image path).
        text: The caption, or the question / prompt for QA tasks (with ``[MASK]``-style blank for FiB as
            written by the benchmark, e.g. ``_____``).
        task: What the sample is for.
        options: Candidate answers of a multiple-choice sample, in file order.
        label: Index of the correct option (0-based) or of the answer in an answer vocabulary.
        answer: Answer text of open-ended QA / fill-in-the-blank.
        captions: Every reference caption of the video (retrieval over paragraphs, captioning metrics).
        start: Clip start in seconds inside the video file (``None`` = from the beginning).
        end: Clip end in seconds (``None`` = to the end).
        is_image: True when ``video`` is a still image (image-text pre-training data).
        source: ``"path:line"`` of the annotation the record was read from, for error messages.
    """

    sample_id: str
    video: str
    text: str
    task: Task = "caption"
    options: list[str] | None = None
    label: int | None = None
    answer: str | None = None
    captions: list[str] = field(default_factory=list)
    start: float | None = None
    end: float | None = None
    is_image: bool = False
    source: str = ""
