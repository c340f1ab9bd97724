"""Plain result records of the inference methods and a list type that turns them into a table."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .inputs import Failure

__all__ = ["Answer", "Caption", "Hit", "Results"]

T = TypeVar("T")


@dataclass(frozen=True)
class Hit:
    """One ranked video for a text query.

    Attributes:
        query: The text.
        video: The video's name (its path, or ``<bytes #i>`` / ``<tensor #i>``).
        score: The task's matching score (VTM logit; higher = better).
        rank: 1 for the best video of this query.
        video_index: The video's position in the input list.
    """

    query: str
    video: str
    score: float
    rank: int
    video_index: int


@dataclass(frozen=True)
class Answer:
    """The answer to one question about one video.

    Attributes:
        video: The video's name.
        question: The question (or fill-in-the-blank sentence).
        answer: The predicted answer (a word / token; the chosen option's text for multiple choice).
        score: The task's score of that answer (option score, or MLM logit of the token).
        option: Index of the chosen option (multiple choice), else ``None``.
    """

    video: str
    question: str
    answer: str
    score: float
    option: int | None = None


@dataclass(frozen=True)
class Caption:
    """A generated caption.

    Attributes:
        video: The video's name.
        caption: The decoded text.
        score: The decoder's confidence (mean log-probability of the chosen tokens).
    """

    video: str
    caption: str
    score: float


class Results(list, Generic[T]):
    """A list of result records plus the inputs that could not be read (:attr:`failures`).

    ``results.to_rows()`` gives a list of dicts (one per record), ``results.to_pandas()`` a DataFrame (pandas
    needed), ``print(results)`` a text table.
    """

    def __init__(self, items: list[T] = (), failures: list[Failure] | None = None) -> None:  # type: ignore[assignment]
        super().__init__(items)
        self.failures: list[Failure] = list(failures or [])

    def to_rows(self) -> list[dict[str, Any]]:
        """One dict per record (field name -> value)."""
        return [dataclasses.asdict(r) for r in self]

    def to_pandas(self) -> Any:
        """A ``pandas.DataFrame`` of :meth:`to_rows` (needs pandas installed)."""
        try:
            import pandas as pd
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("to_pandas needs pandas (pip install pandas); to_rows() needs nothing") from e
        return pd.DataFrame(self.to_rows())

    def table(self, floatfmt: str = ".4f") -> str:
        """A plain-text table of the records (and a line per failure)."""
        rows = self.to_rows()
        if not rows:
            lines = ["(no results)"]
        else:
            cols = list(rows[0])
            cells = [
                [f"{r[c]:{floatfmt}}" if isinstance(r[c], float) else str(r[c]) for c in cols] for r in rows
            ]
            widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
            lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
            lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
        lines += [f"unreadable: {f.video} ({f.reason})" for f in self.failures]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        return f"Results({list.__repr__(self)}, failures={self.failures!r})"
