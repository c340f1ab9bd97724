"""Shared pieces of the annotation readers: the error type, the registry and careful file access."""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from violetv2.data.records import Record

__all__ = [
    "READERS",
    "AnnotationError",
    "PathLike",
    "clean_text",
    "csv_rows",
    "header_rows",
    "load_json",
    "load_json_list",
    "parse_iso8601_duration",
    "physical_lines",
    "read_lines",
    "read_text",
    "register",
    "require",
    "split_fields",
    "to_int",
]

PathLike = str | os.PathLike[str]
Reader = Callable[..., list[Record]]

READERS: dict[str, Reader] = {}


class AnnotationError(ValueError):
    """A malformed annotation file: the message names the file, the line or record, and the fault."""

    def __init__(self, path: PathLike, where: str | int | None, message: str) -> None:
        self.path = os.fspath(path)
        self.where = where
        loc = self.path if where is None else f"{self.path}, {_where(where)}"
        super().__init__(f"{loc}: {message}")


def _where(where: str | int) -> str:
    return f"line {where}" if isinstance(where, int) else str(where)


def register(name: str) -> Callable[[Reader], Reader]:
    """Register a reader under ``name``; the wrapper checks the file exists, is not empty, yields records."""

    def deco(fn: Reader) -> Reader:
        @functools.wraps(fn)
        def wrapper(path: PathLike, *args: Any, **kw: Any) -> list[Record]:
            p = Path(path)
            if not p.is_file():
                raise AnnotationError(p, None, f"no such annotation file (format {name!r})")
            if p.stat().st_size == 0:
                raise AnnotationError(p, None, "file is empty")
            records = fn(path, *args, **kw)
            if not records:
                raise AnnotationError(p, None, f"no records found (format {name!r})")
            return records

        READERS[name] = wrapper
        return wrapper

    return deco


def read_text(path: PathLike) -> str:
    """Whole file as UTF-8 text (a BOM is dropped); undecodable bytes raise with their line number."""
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise AnnotationError(path, line, f"not valid UTF-8 at byte {err.start}") from err


def physical_lines(path: PathLike) -> list[str]:
    """The file's lines split only at LF, CRLF or CR (not at U+2028, form feed...), without line ends."""
    return [line.rstrip("\r\n") for line in io.StringIO(read_text(path), newline="")]


def read_lines(path: PathLike) -> list[tuple[int, str]]:
    """``(line_number, line)`` for every non-blank line; LF or CRLF, with or without a final newline."""
    return [(i, line) for i, line in enumerate(physical_lines(path), start=1) if line.strip()]


def csv_rows(path: PathLike, delimiter: str = ",") -> Iterator[tuple[int, list[str]]]:
    """``(first_line, fields)`` per CSV record with RFC-4180 quoting (quoted fields may span lines).

    Blank records are skipped. ``first_line`` is the 1-based physical line the record starts on.
    """
    text = read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise AnnotationError(path, start, f"malformed CSV record: {err}") from err
        if any(field.strip() for field in row):
            yield start, row
        start = reader.line_num + 1


def header_rows(
    path: PathLike, required: list[str], delimiter: str = ","
) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line, {column: value})`` for a CSV with a header line; checks columns exist and counts match."""
    rows = csv_rows(path, delimiter)
    first = next(rows, None)
    if first is None:
        raise AnnotationError(path, 1, "no header line")
    header = [h.strip() for h in first[1]]
    missing = [c for c in required if c not in header]
    if missing:
        raise AnnotationError(path, first[0], f"header {header} lacks column(s) {missing}")
    for line, row in rows:
        if len(row) != len(header):
            raise AnnotationError(path, line, f"expected {len(header)} columns {header}, found {len(row)}")
        yield line, dict(zip(header, row))


def split_fields(path: PathLike, line: int, text: str, sep: str, count: int | tuple[int, ...]) -> list[str]:
    """Split ``text`` on ``sep`` and check the number of fields (``count`` may list several allowed)."""
    fields = text.split(sep)
    allowed = (count,) if isinstance(count, int) else count
    if len(fields) not in allowed:
        want = " or ".join(str(c) for c in allowed)
        raise AnnotationError(path, line, f"expected {want} {sep!r}-separated fields, found {len(fields)}")
    return fields


def load_json(path: PathLike) -> Any:
    """Parse a JSON file; a syntax error raises with its line and column."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise AnnotationError(path, err.lineno, f"invalid JSON at column {err.colno}: {err.msg}") from err


def load_json_list(path: PathLike) -> list[Any]:
    """A JSON file whose top level must be an array."""
    data = load_json(path)
    if not isinstance(data, list):
        raise AnnotationError(path, None, f"expected a JSON array at top level, found {type(data).__name__}")
    return data


def require(path: PathLike, where: str, item: Any, key: str, kind: type | tuple[type, ...]) -> Any:
    """``item[key]``, checking ``item`` is an object, the key exists and its value has the given type."""
    if not isinstance(item, dict):
        raise AnnotationError(path, where, f"expected a JSON object, found {type(item).__name__}")
    if key not in item:
        raise AnnotationError(path, where, f"missing required key {key!r} (keys: {sorted(item)})")
    value = item[key]
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise AnnotationError(path, where, f"key {key!r} must be {names}, found {value!r}")
    return value


def to_int(path: PathLike, where: str | int, value: str, what: str) -> int:
    """Parse an integer field, raising a located error for anything else."""
    try:
        return int(value.strip())
    except ValueError:
        raise AnnotationError(path, where, f"{what} must be an integer, found {value!r}") from None


_ISO_DURATION = re.compile(
    r"^P(?:(\d+(?:\.\d+)?)D)?T?(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?$"
)


def parse_iso8601_duration(text: str) -> float:
    """Seconds in an ISO-8601 duration such as WebVid's ``PT00H00M30S`` (days, hours, minutes, seconds).

    Raises:
        ValueError: ``text`` is not such a duration.
    """
    match = _ISO_DURATION.match(text.strip())
    if not match or text.strip() in ("P", "PT"):
        raise ValueError(f"not an ISO-8601 duration: {text!r}")
    d, h, m, s = (float(g) if g else 0.0 for g in match.groups())
    return ((d * 24 + h) * 60 + m) * 60 + s


def clean_text(text: str) -> str:
    """Collapse every whitespace run (including embedded CR/LF) to one space and strip the ends."""
    return " ".join(text.split())
