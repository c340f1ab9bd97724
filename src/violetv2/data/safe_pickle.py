"""Load pickles of plain data without running any code they carry.

VIOLET v1 ships its frames as ``img_*.pkl`` and VIOLETv2 its id->offset tables as ``*.id2lineidx.pkl``.
``pickle.load`` on a file from the internet can run arbitrary code (a pickle may name any importable
callable, e.g. ``os.system``, and call it while loading). :func:`load` uses a :class:`pickle.Unpickler`
whose ``find_class`` refuses every global, so only the built-in containers and scalars that pickle
encodes without a global (dict, list, tuple, set, frozenset, str, bytes, bytearray, int, float, bool,
None) can be loaded; anything else raises :class:`UnsafePickleError` before any of its code runs.
"""

from __future__ import annotations

import io
import os
import pickle
from typing import Any

__all__ = ["UnsafePickleError", "load", "loads"]


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a class or function; it was refused and nothing was executed."""


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global lookup (``GLOBAL`` / ``STACK_GLOBAL`` opcodes)."""

    def __init__(self, file: io.BufferedIOBase, name: str) -> None:
        super().__init__(file)
        self._name = name

    def find_class(self, module: str, name: str) -> Any:
        raise UnsafePickleError(
            f"{self._name}: refused to load class/function {module}.{name}: only plain containers "
            "(dict, list, tuple, set), str, bytes, numbers, bool and None are allowed"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self._name}: refused persistent id {pid!r}")


def load(path: str | os.PathLike[str]) -> Any:
    """Load a pickle file that may only contain plain Python data.

    Args:
        path: The ``.pkl`` file.

    Returns:
        The unpickled object (dicts, lists, tuples, sets, str, bytes, numbers, bool, None).

    Raises:
        UnsafePickleError: The pickle references a class or function (named in the message).
        pickle.UnpicklingError: The file is not a valid pickle (message names the file).
    """
    with open(path, "rb") as f:
        return _load(f, os.fspath(path))


def loads(data: bytes, name: str = "<bytes>") -> Any:
    """Like :func:`load` for an in-memory pickle; ``name`` is used in error messages."""
    return _load(io.BytesIO(data), name)


def _load(f: io.BufferedIOBase, name: str) -> Any:
    try:
        return _RestrictedUnpickler(f, name).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, IndexError, TypeError) as err:
        raise pickle.UnpicklingError(f"{name}: not a valid pickle of plain data ({err})") from err
