"""Decoding, sampling and seek planning (violetv2.data.video) on real tiny files written with PyAV."""

from __future__ import annotations

import random
from pathlib import Path

import av
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from _videos import make_videos
from violetv2.data import video as video_mod
from violetv2.data.video import (
    VideoDecodeError,
    index_video,
    plan_seeks,
    read_clip,
    read_clips,
    sample_indices,
)


@pytest.fixture(scope="session")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_videos(tmp_path_factory)


def decoded_indices(clip: torch.Tensor) -> list[int]:
    """Frame index of every frame of ``[t, c, h, w]`` from its red level (bottom-right pixel, no marker)."""
    return [round(float(r) / 8) for r in clip[:, 0, -1, -1]]


# ------------------------------------------------------------------------------------------ sampling


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 500), t=st.integers(1, 16), train=st.booleans(), seed=st.integers(0, 2**16))
def test_sample_indices_properties(n: int, t: int, train: bool, seed: int) -> None:
    (clip,) = sample_indices(n, t, train=train, rng=random.Random(seed))
    assert len(clip) == t
    assert clip == sorted(clip)
    assert all(0 <= i < n for i in clip)
    if n >= t:  # one frame inside each of the T equal segments
        for k, i in enumerate(clip):
            assert k * n // t <= i < (k + 1) * n // t
    else:  # short clip: every frame, then the last repeated
        assert clip == list(range(n)) + [n - 1] * (t - n)


@given(n=st.integers(1, 300), t=st.integers(1, 8), clips=st.integers(1, 4))
def test_sample_indices_eval_is_deterministic_and_multi_clip(n: int, t: int, clips: int) -> None:
    a = sample_indices(n, t, train=False, num_clips=clips)
    assert a == sample_indices(n, t, train=False, num_clips=clips, rng=random.Random(123))
    assert len(a) == clips and all(c == sorted(c) and len(c) == t for c in a)
    if clips == 1 and n >= t:  # segment centres
        assert a[0] == [k * n // t + ((k + 1) * n // t - k * n // t) // 2 for k in range(t)]


def test_sample_indices_multi_clip_disjoint_when_segments_are_long() -> None:
    clips = sample_indices(100, 5, train=False, num_clips=4)
    assert len({i for c in clips for i in c}) == 20


def test_sample_indices_train_varies_with_rng() -> None:
    draws = {tuple(sample_indices(300, 4, train=True, rng=random.Random(s))[0]) for s in range(20)}
    assert len(draws) > 1


def test_sample_indices_rejects_empty() -> None:
    with pytest.raises(ValueError, match="num_frames"):
        sample_indices(0, 4, train=False)


# ------------------------------------------------------------------------------------------ planning


def test_plan_seeks_single_keyframe_never_reseeks() -> None:
    assert plan_seeks([0], [3, 9, 15, 21], start=0) == [None] * 4
    assert plan_seeks([0], [3, 9, 15, 21], start=None) == [0, None, None, None]


def test_plan_seeks_dense_keyframes_seeks_only_across_keyframes() -> None:
    keys = [0, 10, 20, 30]
    assert plan_seeks(keys, [2, 5, 12, 13, 35], start=0) == [None, None, 10, None, 30]
    assert plan_seeks(keys, [2, 5, 12, 13, 35], start=0, min_skip=5) == [None, None, None, None, 30]


@given(
    keys=st.lists(st.integers(0, 200), min_size=1, max_size=20, unique=True).map(sorted),
    targets=st.lists(st.integers(0, 200), min_size=1, max_size=10, unique=True).map(sorted),
    min_skip=st.integers(0, 20),
)
def test_plan_seeks_property(keys: list[int], targets: list[int], min_skip: int) -> None:
    plan = plan_seeks(keys, targets, start=keys[0], min_skip=min_skip)
    position = keys[0]  # next frame the decoder produces
    for target, seek in zip(targets, plan):
        worth = [k for k in keys if k - position > min_skip and k <= target]
        assert seek == (max(worth) if worth else None)
        position = max(seek if seek is not None else position, target + 1)


def test_plan_seeks_threshold_skips_short_gaps() -> None:
    assert plan_seeks([0, 10], [2, 12], start=0, min_skip=8) == [None, None]  # gap 3 -> 10 is 7 frames
    assert plan_seeks([0, 10], [2, 12], start=0, min_skip=6) == [None, 10]


# ------------------------------------------------------------------------------------------ decoding


@pytest.mark.parametrize("name", ["sparse", "dense", "bframes"])
def test_eval_clip_is_segment_centres(videos: dict[str, Path], name: str) -> None:
    clip = read_clip(videos[name], 5)
    assert clip.dtype == torch.uint8 and clip.shape == (5, 3, 48, 64)
    assert decoded_indices(clip) == [3, 9, 15, 21, 27]  # 30 frames, segments of 6, centres


def test_index_finds_keyframes(videos: dict[str, Path]) -> None:
    assert len(index_video(videos["sparse"]).keyframes) == 1
    dense = index_video(videos["dense"])
    assert dense.num_frames == 30 and len(dense.keyframes) == 2


def test_planned_decode_decodes_fewer_frames_than_seeking_each(videos: dict[str, Path], monkeypatch) -> None:
    seeks: list[int] = []
    original = video_mod._Frames.seek

    def counting_seek(self, pts: int) -> None:
        seeks.append(pts)
        original(self, pts)

    monkeypatch.setattr(video_mod._Frames, "seek", counting_seek)
    read_clip(videos["sparse"], 5)
    read_clip(videos["sparse"], 5)  # index cached: the fresh decoder is already at frame 0
    assert len(seeks) <= 1  # one keyframe: decode forward, never re-seek per target


@pytest.mark.parametrize(
    "name", ["sparse", "dense", "bframes", "fractional", "vfr", "avi", "mkv", "raw_h264"]
)
def test_train_sampling_matches_sample_indices(videos: dict[str, Path], name: str) -> None:
    n = index_video(videos[name]).num_frames
    expected = sample_indices(n, 4, train=True, rng=random.Random(7))[0]
    clip = read_clip(videos[name], 4, train=True, rng=random.Random(7))
    assert decoded_indices(clip) == expected


def test_fractional_vfr_and_containers_count_frames(videos: dict[str, Path]) -> None:
    assert index_video(videos["fractional"]).num_frames == 24
    assert index_video(videos["vfr"]).num_frames == 24
    assert index_video(videos["raw_h264"]).num_frames == 20  # no timestamps: counted
    assert index_video(videos["raw_h264"]).pts == ()
    assert decoded_indices(read_clip(videos["vfr"], 4)) == [3, 9, 15, 21]


def test_path_and_bytes_give_the_same_clip(videos: dict[str, Path]) -> None:
    path = videos["dense"]
    assert torch.equal(read_clip(path, 4), read_clip(path.read_bytes(), 4))


def test_short_clip_repeats_last_frame(videos: dict[str, Path]) -> None:
    assert decoded_indices(read_clip(videos["short"], 5)) == [0, 1, 2, 2, 2]


@pytest.mark.parametrize("ext", ["png", "jpg"])
def test_still_image_is_one_frame_clip(videos: dict[str, Path], ext: str) -> None:
    one = read_clip(videos[ext], 1)
    assert one.shape == (1, 3, 48, 64)
    assert decoded_indices(one) == [3]
    assert read_clip(videos[ext], 3).shape == (3, 3, 48, 64)


def test_rotation_metadata_rotates_output(videos: dict[str, Path]) -> None:
    with av.open(str(videos["rotated"])) as c:
        assert next(c.decode(video=0)).rotation == 90
    clip = read_clip(videos["rotated"], 2)
    assert clip.shape == (2, 3, 64, 48)  # portrait
    # counter-clockwise by 90: the top-left green marker ends up bottom-left
    assert clip[0, 1, -3, 2] > 200 and clip[0, 1, 2, 2] < 50


def test_resize_on_decode(videos: dict[str, Path]) -> None:
    assert read_clip(videos["hd"], 2, size=32).shape == (2, 3, 32, 64)
    assert read_clip(videos["hd"], 2, size=32, side="longer").shape == (2, 3, 16, 32)
    assert read_clip(videos["rotated"], 2, size=24).shape == (2, 3, 32, 24)


def test_start_end_trim(videos: dict[str, Path]) -> None:
    # 15 fps: [0.5 s, 1.0 s) holds frames 8..14
    assert decoded_indices(read_clip(videos["sparse"], 4, start=0.5, end=1.0)) == [8, 10, 12, 14]
    with pytest.raises(VideoDecodeError, match="no frame between"):
        read_clip(videos["sparse"], 4, start=5.0, end=6.0)


def test_multi_clip_stacked(videos: dict[str, Path]) -> None:
    clips = read_clips(videos["dense"], 3, num_clips=2)
    assert clips.shape == (2, 3, 3, 48, 64)
    assert [decoded_indices(c) for c in clips] == sample_indices(30, 3, train=False, num_clips=2)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("zero", "empty file"),
        ("text", "not a readable media file"),
        ("truncated", "not a readable media file"),
        ("truncated_faststart", "truncated"),
        ("missing", "no such file"),
    ],
)
def test_bad_files_raise_video_decode_error(videos: dict[str, Path], name: str, reason: str) -> None:
    with pytest.raises(VideoDecodeError, match=reason) as info:
        read_clip(videos[name], 4)
    assert info.value.path == str(videos[name])
    assert str(videos[name]) in str(info.value)


@pytest.mark.parametrize("data", [b"", b"\x00garbage" * 50])
def test_bad_bytes_raise_video_decode_error(data: bytes) -> None:
    with pytest.raises(VideoDecodeError) as info:
        read_clip(data, 4)
    assert info.value.path == "<bytes>"


def test_truncated_bytes_raise(videos: dict[str, Path]) -> None:
    data = videos["dense"].read_bytes()
    with pytest.raises(VideoDecodeError):
        read_clip(data[: len(data) // 3], 4)
