"""The release's temporal sampling (violetv2.data.video.release_indices) against README 2.1's rule."""

from __future__ import annotations

import math
import random

import pytest

from violetv2.data.video import release_indices, sample_indices


def _rule(n: int, t: int, s: int) -> list[int]:
    """README 2.1, written independently: T frames evenly spaced (rounded) from s to min(s+(T-1)C, N-1)."""
    c = math.ceil(n / t)
    end = min(s + (t - 1) * c, n - 1)
    return [int(round(s + k * (end - s) / (t - 1))) for k in range(t)]


@pytest.mark.parametrize(("n", "t"), [(30, 5), (32, 5), (7, 3), (100, 4), (11, 5), (6, 5)])
def test_all_clips_follow_the_readme_rule(n: int, t: int) -> None:
    clips = release_indices(n, t, train=False, num_clips="all")
    assert len(clips) == math.ceil(n / t)
    assert clips == [_rule(n, t, s) for s in range(math.ceil(n / t))]
    assert all(0 <= i < n for clip in clips for i in clip)


def test_single_eval_clip_spans_the_video_and_degenerate_cases() -> None:
    assert release_indices(30, 3, train=False) == [[0, 14, 29]]  # round half to even, as the release
    assert release_indices(5, 5, train=False, num_clips="all") == [[0, 1, 2, 3, 4]]  # N == T: one clip
    assert release_indices(1, 4, train=False, num_clips="all") == [[0, 0, 0, 0]]
    assert release_indices(3, 5, train=False) == [[0, 1, 2, 2, 2]]  # short: last frame repeated


def test_training_draws_a_random_start_of_the_stride_grid() -> None:
    n, t = 30, 5  # C = 6
    draws = {tuple(release_indices(n, t, train=True, rng=random.Random(seed))[0]) for seed in range(60)}
    assert draws == {tuple(_rule(n, t, s)) for s in range(6)}


def test_k_clips_take_evenly_spaced_starts_and_stored_frames() -> None:
    assert release_indices(30, 5, train=False, num_clips=3) == [_rule(30, 5, s) for s in (0, 2, 5)]
    stored = sample_indices(300, 4, train=False, sampling="release", stored_frames=10, num_clips="all")
    kept = [int(round(k * 299 / 9)) for k in range(10)]
    assert stored == [
        [kept[i] for i in clip] for clip in release_indices(10, 4, train=False, num_clips="all")
    ]
    with pytest.raises(ValueError, match="needs 'release'"):
        sample_indices(30, 5, train=False, num_clips="all")
