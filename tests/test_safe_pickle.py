"""The restricted unpickler loads plain data and refuses (without running) anything that names a global."""

from __future__ import annotations

import base64
import collections
import os
import pickle
from pathlib import Path

import pytest

from violetv2.data import safe_pickle
from violetv2.data.readers import AnnotationError, PklFrameStore
from violetv2.data.safe_pickle import UnsafePickleError


class _Exploit:
    """Pickles to a call of ``os.system`` that would create a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


def _write(tmp_path: Path, obj: object, protocol: int = pickle.HIGHEST_PROTOCOL) -> Path:
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


@pytest.mark.parametrize("protocol", [4, 5])
def test_plain_data_round_trips(tmp_path: Path, protocol: int) -> None:
    obj = {
        "video1": ["abc", b"\xff\xd8", 3, 2.5, None, True],
        "t": (1, "x"),
        "s": {1, 2},
        "f": frozenset({3}),
    }
    assert safe_pickle.load(_write(tmp_path, obj, protocol)) == obj


def test_malicious_pickle_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = _write(tmp_path, {"video1": [_Exploit(marker)]})
    with pytest.raises(UnsafePickleError) as err:
        safe_pickle.load(path)
    assert str(path) in str(err.value)
    assert "system" in str(err.value)  # the refused callable is named (posix.system / nt.system)
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # sanity: the unrestricted unpickler really would run it
    assert marker.exists()


def test_object_pickle_names_the_refused_class(tmp_path: Path) -> None:
    path = _write(tmp_path, collections.OrderedDict(a=1))
    with pytest.raises(UnsafePickleError, match=r"collections\.OrderedDict"):
        safe_pickle.load(path)


def test_garbage_is_a_clear_unpickling_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.pkl"
    path.write_bytes(b"this is not a pickle")
    with pytest.raises(pickle.UnpicklingError, match="bad.pkl"):
        safe_pickle.load(path)


def test_loads_bytes_uses_the_given_name() -> None:
    with pytest.raises(UnsafePickleError, match="<mem>"):
        safe_pickle.loads(pickle.dumps(collections.Counter("ab")), name="<mem>")


def test_violet_v1_pkl_frame_store(tmp_path: Path) -> None:
    jpegs = [b"\xff\xd8frame0", b"\xff\xd8frame1"]
    path = _write(
        tmp_path, {"video7017": [base64.b64encode(j).decode() for j in jpegs], "video2": [jpegs[0]]}
    )
    store = PklFrameStore(path)
    assert "video7017" in store and "nope" not in store and len(store) == 2
    assert store["video7017"] == jpegs
    assert store["video2"] == [jpegs[0]]  # raw JPEG bytes pass through


def test_pkl_frame_store_refuses_object_pickles_and_bad_layouts(tmp_path: Path) -> None:
    with pytest.raises(UnsafePickleError):
        PklFrameStore(_write(tmp_path, {"v": [_Exploit(tmp_path / "m")]}))
    with pytest.raises(AnnotationError, match="dict of video id"):
        PklFrameStore(_write(tmp_path, ["not", "a", "dict"]))
    store = PklFrameStore(_write(tmp_path, {"v": ["%%%not base64%%%"]}))
    with pytest.raises(AnnotationError, match="key 'v'.*base64"):
        store["v"]
