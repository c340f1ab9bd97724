"""MVM masking strategies and apply_mask: properties over random grids, ratios and seeds."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from violetv2.mvm.masking import (
    STRATEGIES,
    MaskSampler,
    apply_mask,
    attended_mask,
    blockwise_mask,
    expected_ratio,
    frame_mask,
    mask_count,
    pixel_mask,
    random_mask,
    tube_mask,
)

SETTINGS = settings(derandomize=True, max_examples=30, deadline=None)

grids = st.tuples(
    st.integers(1, 3),  # b
    st.integers(1, 5),  # t
    st.integers(2, 7),  # gh
    st.integers(2, 7),  # gw
)
ratios = st.floats(0.05, 0.9)
seeds = st.integers(0, 2**31 - 1)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def per_sample(mask: torch.Tensor) -> list[int]:
    return mask.sum(dim=(1, 2, 3)).tolist()


def test_mask_count_rounds_and_clamps() -> None:
    assert mask_count(0.15, 196) == 29  # 224 px, T = 4
    assert mask_count(0.15, 16) == 2  # tiny preset: 2x2 grid, T = 4
    assert mask_count(0.01, 4) == 1  # never nothing
    assert mask_count(0.99, 4) == 3  # never everything
    with pytest.raises(ValueError, match="ratio"):
        mask_count(1.0, 10)
    with pytest.raises(ValueError, match="cannot mask 1"):
        mask_count(0.5, 1)


@SETTINGS
@given(grids, ratios, seeds)
def test_random_mask_exact_count(grid: tuple[int, int, int, int], ratio: float, seed: int) -> None:
    b, t, gh, gw = grid
    mask = random_mask(b, t, gh, gw, ratio, generator=gen(seed))
    assert mask.shape == (b, t, gh, gw) and mask.dtype == torch.bool
    assert per_sample(mask) == [mask_count(ratio, t * gh * gw)] * b


@SETTINGS
@given(grids, ratios, seeds)
def test_tube_mask_same_on_every_frame(grid: tuple[int, int, int, int], ratio: float, seed: int) -> None:
    b, t, gh, gw = grid
    mask = tube_mask(b, t, gh, gw, ratio, generator=gen(seed))
    assert torch.equal(mask, mask[:, :1].expand_as(mask))
    assert per_sample(mask) == [t * mask_count(ratio, gh * gw)] * b


@SETTINGS
@given(grids, ratios, seeds)
def test_frame_mask_whole_frames(grid: tuple[int, int, int, int], ratio: float, seed: int) -> None:
    b, t, gh, gw = grid
    mask = frame_mask(b, t, gh, gw, ratio, generator=gen(seed))
    if t == 1:  # falls back to random patches
        assert per_sample(mask) == [mask_count(ratio, gh * gw)] * b
        return
    per_frame = mask.flatten(2).float().mean(dim=2)
    assert set(per_frame.unique().tolist()) <= {0.0, 1.0}
    assert (per_frame.sum(dim=1) == mask_count(ratio, t)).all()


@SETTINGS
@given(grids, ratios, seeds)
def test_blockwise_exact_count_and_blocks(grid: tuple[int, int, int, int], ratio: float, seed: int) -> None:
    b, t, gh, gw = grid
    mask = blockwise_mask(b, t, gh, gw, ratio, generator=gen(seed))
    assert mask.shape == (b, t, gh, gw)
    assert per_sample(mask) == [mask_count(ratio, t * gh * gw)] * b


def test_blockwise_blocks_stay_inside_grid_and_within_limits() -> None:
    from violetv2.mvm.masking import _block_limits, _draw_block

    g = gen(0)
    for grid in [(4, 7, 7), (1, 7, 7), (4, 2, 2), (5, 3, 6)]:
        limits = _block_limits(*grid)
        for _ in range(200):
            block = _draw_block(grid, limits, g)
            for s, size, lim in zip(block, grid, limits):
                assert 0 <= s.start < s.stop <= size
                assert 1 <= s.stop - s.start <= lim
    assert _block_limits(4, 7, 7) == (3, 3, 3)  # t in [1, T-1], h/w in [1, floor(14/3) - 1]
    assert _block_limits(1, 2, 2) == (1, 1, 1)  # clamped to >= 1


def test_blockwise_is_spatially_clustered() -> None:
    """Blocks make masked patches touch each other far more often than random masking does."""

    def neighbour_rate(mask: torch.Tensor) -> float:
        m = mask.float()
        right = (m[..., :, 1:] * m[..., :, :-1]).sum()
        down = (m[..., 1:, :] * m[..., :-1, :]).sum()
        return float((right + down) / m.sum())

    block = blockwise_mask(64, 4, 7, 7, 0.3, generator=gen(1))
    rand = random_mask(64, 4, 7, 7, 0.3, generator=gen(1))
    assert neighbour_rate(block) > 2 * neighbour_rate(rand)


def test_attended_only_positive_and_prefers_heavy() -> None:
    b, t, gh, gw = 2000, 2, 3, 3
    weights = torch.zeros(t, gh * gw)
    weights[0, :4] = 1.0  # light
    weights[1, :4] = 9.0  # heavy
    mask = attended_mask(weights.expand(b, -1, -1), gh, gw, 0.2, generator=gen(0))  # 4 of 18 masked
    flat = mask.flatten(2)
    assert per_sample(mask) == [4] * b
    assert not flat[:, :, 4:].any()  # zero-weight tokens never chosen (8 positive ones available)
    light, heavy = flat[:, 0, :4].float().mean(), flat[:, 1, :4].float().mean()
    assert heavy > 2 * light  # Plackett-Luce with 9:1 weights: about 0.9 vs 0.1 per token
    # Gumbel-top-k equals sequential sampling without replacement (torch.multinomial) in distribution
    ref = torch.multinomial(weights.flatten().expand(b, -1), 4, replacement=False, generator=gen(1))
    ref_light = (ref < 4).float().sum(dim=1).mean() / 4
    assert abs(light - ref_light) < 0.03


def test_attended_fills_with_zero_weight_when_too_few_positive() -> None:
    weights = torch.zeros(3, 1, 16)
    weights[:, 0, 5] = 1.0
    mask = attended_mask(weights, 4, 4, 0.5, generator=gen(0))
    assert per_sample(mask) == [8] * 3
    assert mask.flatten(1)[:, 5].all()


def test_attended_accepts_grid_layout_and_validates() -> None:
    weights = torch.rand(2, 3, 4, 4, generator=gen(0))
    flat = weights.flatten(2)
    assert torch.equal(
        attended_mask(weights, 4, 4, 0.3, generator=gen(5)), attended_mask(flat, 4, 4, 0.3, generator=gen(5))
    )
    with pytest.raises(ValueError, match="non-negative"):
        attended_mask(-flat, 4, 4, 0.3)
    with pytest.raises(ValueError, match=r"\[b, 3, 9\]"):
        attended_mask(flat, 3, 3, 0.3)


@SETTINGS
@given(grids, st.floats(0.05, 0.6), seeds, st.sets(st.sampled_from(STRATEGIES), min_size=1))
def test_sampler_every_sample_masked_and_visible(
    grid: tuple[int, int, int, int], ratio: float, seed: int, names: set[str]
) -> None:
    b, t, gh, gw = grid
    names_list = sorted(names)
    attention = torch.rand(b, t, gh * gw, generator=gen(seed)) if "attended" in names else None
    sampler = MaskSampler(names_list, ratio=ratio)
    mask, choice = sampler.sample(b, t, gh, gw, attention=attention, generator=gen(seed))
    counts = mask.sum(dim=(1, 2, 3))
    assert (counts >= 1).all() and (counts <= t * gh * gw - 1).all()
    for i in range(b):
        name = names_list[int(choice[i])]
        assert counts[i] / (t * gh * gw) == pytest.approx(expected_ratio(ratio, t, gh, gw, name))


def test_sampler_draws_every_configured_strategy() -> None:
    sampler = MaskSampler(["random", "tube", "frame"], ratio=0.25)
    mask, choice = sampler.sample(300, 4, 7, 7, generator=gen(3))
    assert set(choice.tolist()) == {0, 1, 2}
    assert torch.bincount(choice).min() > 60
    tubes = mask[choice == 1]
    assert torch.equal(tubes, tubes[:, :1].expand_as(tubes))


@pytest.mark.parametrize("names", [["random", "blockwise"], list(STRATEGIES)])
def test_sampler_deterministic_under_seed(names: list[str]) -> None:
    attention = torch.rand(6, 4, 49, generator=gen(0))
    sampler = MaskSampler(names, ratio=0.3)
    a = sampler(6, 4, 7, 7, attention=attention, generator=gen(11))
    b = sampler(6, 4, 7, 7, attention=attention, generator=gen(11))
    c = sampler(6, 4, 7, 7, attention=attention, generator=gen(12))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_sampler_validation() -> None:
    with pytest.raises(ValueError, match="unknown masking strategy"):
        MaskSampler(["random", "grid"])
    with pytest.raises(ValueError, match="ratio"):
        MaskSampler(["random"], ratio=0.0)
    with pytest.raises(ValueError, match="ratio"):
        MaskSampler(["random"], ratio=1.0)
    with pytest.raises(ValueError, match="at least one"):
        MaskSampler([])
    with pytest.raises(ValueError, match="'attended' needs attention"):
        MaskSampler(["attended"])(2, 4, 7, 7)


def test_sampler_images() -> None:
    """t = 1 clips (CC3M images) work with every grid strategy, including frame (falls back to random)."""
    mask = MaskSampler(["random", "blockwise", "tube", "frame"], ratio=0.15)(8, 1, 7, 7, generator=gen(0))
    assert per_sample(mask) == [7] * 8


def test_sampler_tiny_preset_grid() -> None:
    from violetv2.config import VioletConfig

    cfg = VioletConfig.from_name("tiny")
    g = cfg.image_size // 32
    mask = MaskSampler(ratio=0.15)(4, cfg.num_frames, g, g, generator=gen(0))
    assert mask.shape == (4, 4, 2, 2)
    assert per_sample(mask) == [2] * 4  # round(0.15 * 16)


@SETTINGS
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), seeds)
def test_apply_mask_zeroes_exactly_masked_pixels(b: int, t: int, gh: int, gw: int, seed: int) -> None:
    patch = 8
    video = torch.randn(b, t, 3, gh * patch, gw * patch, generator=gen(seed)) + 5.0  # no accidental zeros
    mask = torch.rand(b, t, gh, gw, generator=gen(seed + 1)) < 0.5
    out = apply_mask(video, mask, patch=patch)
    where = pixel_mask(mask, patch).expand_as(video)
    assert (out[where] == 0).all()
    assert torch.equal(out[~where], video[~where])
    assert (video != 0).all()  # input untouched


def test_apply_mask_patch_layout() -> None:
    video = torch.ones(1, 2, 3, 64, 96)
    mask = torch.zeros(1, 2, 2, 3, dtype=torch.bool)
    mask[0, 1, 1, 2] = True  # frame 1, bottom-right patch
    out = apply_mask(video, mask)
    assert out[0, 1, :, 32:, 64:].abs().sum() == 0
    assert out.sum() == video.sum() - 3 * 32 * 32


def test_apply_mask_token_variants_and_gradient() -> None:
    video = torch.randn(2, 1, 3, 64, 64, generator=gen(0))  # images
    mask = torch.zeros(2, 1, 2, 2, dtype=torch.bool)
    mask[:, 0, 0, 1] = True
    token = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    out = apply_mask(video, mask, mask_token=token)
    assert torch.equal(
        out[:, 0, :, :32, 32:], torch.tensor([1.0, 2.0, 3.0])[None, :, None, None].expand(2, 3, 32, 32)
    )
    assert torch.equal(out[:, 0, :, 32:], video[:, 0, :, 32:])
    out.sum().backward()
    assert torch.equal(token.grad, torch.full((3,), 2.0 * 32 * 32))  # 2 masked patches of 32x32
    full = torch.randn(3, 32, 32, generator=gen(1))
    out = apply_mask(video, mask, mask_token=full)
    assert torch.equal(out[1, 0, :, :32, 32:], full)


def test_apply_mask_validation() -> None:
    video = torch.zeros(1, 2, 3, 64, 64)
    with pytest.raises(ValueError, match=r"mask must be \[1, 2, 2, 2\]"):
        apply_mask(video, torch.zeros(1, 2, 7, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match="not a multiple"):
        apply_mask(torch.zeros(1, 2, 3, 60, 64), torch.zeros(1, 2, 1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask_token"):
        apply_mask(video, torch.zeros(1, 2, 2, 2, dtype=torch.bool), mask_token=torch.zeros(4))
    with pytest.raises(ValueError, match=r"\[b, t, c, h, w\]"):
        apply_mask(video[0], torch.zeros(2, 2, 2, dtype=torch.bool))
