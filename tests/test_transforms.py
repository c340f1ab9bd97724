"""CPU clip transforms and the batched Kornia variant (violetv2.data.transforms)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from _videos import make_videos
from violetv2.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EvalTransform,
    GpuNormalize,
    PadSquareTransform,
    TrainTransform,
    build_transform,
    center_crop,
    normalize,
    pad_to_square,
    random_crop,
    resize,
)
from violetv2.data.video import read_clip


def coordinate_clip(t: int = 3, h: int = 40, w: int = 60) -> torch.Tensor:
    """uint8 ``[t, 3, h, w]``: channel 0 = row, channel 1 = column, channel 2 = frame index."""
    rows = torch.arange(h).view(h, 1).expand(h, w)
    cols = torch.arange(w).view(1, w).expand(h, w)
    frames = [torch.stack([rows, cols, torch.full((h, w), i)]) for i in range(t)]
    return torch.stack(frames).to(torch.uint8)


def test_normalize_imagenet_values() -> None:
    white = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = normalize(white)
    assert out.dtype == torch.float32
    for c in range(3):
        assert out[0, c, 0, 0].item() == pytest.approx((1 - IMAGENET_MEAN[c]) / IMAGENET_STD[c], rel=1e-5)


def test_resize_shorter_and_longer_side() -> None:
    clip = coordinate_clip(2, 40, 60)
    assert resize(clip, 20).shape == (2, 3, 20, 30)
    assert resize(clip, 30, side="longer").shape == (2, 3, 20, 30)
    assert resize(clip, 40) is clip  # already the right size: untouched
    assert resize(clip, 20).dtype == torch.uint8


def test_random_crop_is_the_same_window_on_every_frame() -> None:
    clip = coordinate_clip(4, 40, 60)
    out = random_crop(clip, 32, torch.Generator().manual_seed(3))
    assert out.shape == (4, 3, 32, 32)
    assert all(torch.equal(out[0, :2], out[i, :2]) for i in range(4))
    assert out[:, 2, 0, 0].tolist() == [0, 1, 2, 3]  # frames kept in order
    offsets = {
        tuple(random_crop(clip, 32, torch.Generator().manual_seed(s))[0, :2, 0, 0].tolist())
        for s in range(10)
    }
    assert len(offsets) > 1


def test_center_crop_location() -> None:
    out = center_crop(coordinate_clip(1, 40, 60), 20)
    assert out[0, 0, 0, 0].item() == 10 and out[0, 1, 0, 0].item() == 20


def test_crop_pads_small_clips() -> None:
    assert center_crop(coordinate_clip(1, 10, 12), 16).shape == (1, 3, 16, 16)
    assert random_crop(coordinate_clip(1, 10, 12), 16).shape == (1, 3, 16, 16)


def test_pad_to_square_centres_content() -> None:
    out = pad_to_square(coordinate_clip(1, 20, 40))
    assert out.shape == (1, 3, 40, 40)
    assert out[0, :, :10].sum() == 0 and out[0, :, 30:].sum() == 0
    assert out[0, 1, 10, 39].item() == 39


@pytest.mark.parametrize("cls", [TrainTransform, EvalTransform, PadSquareTransform])
def test_transforms_output_normalised_float(cls: type) -> None:
    out = cls(32)(coordinate_clip(3, 40, 60), torch.Generator().manual_seed(0))
    assert out.shape == (3, 3, 32, 32) and out.dtype == torch.float32
    raw = cls(32, normalize=False)(coordinate_clip(3, 40, 60), torch.Generator().manual_seed(0))
    assert raw.dtype == torch.uint8
    assert torch.allclose(normalize(raw), out)


def test_pad_square_bars_are_black_after_normalisation() -> None:
    out = PadSquareTransform(32)(torch.full((1, 3, 16, 32), 255, dtype=torch.uint8))
    black = normalize(torch.zeros(1, 3, 1, 1, dtype=torch.uint8))[0, :, 0, 0]
    assert torch.allclose(out[0, :, 0, 16], black) and torch.allclose(out[0, :, 31, 16], black)
    assert out[0, 0, 16, 16] > 2  # white content in the middle


def test_build_transform_by_name() -> None:
    assert isinstance(build_transform("pad_square", 8), PadSquareTransform)
    assert build_transform("eval", 8).decode_side == "shorter"
    assert build_transform("pad_square", 8).decode_side == "longer"
    with pytest.raises(ValueError, match="unknown transform"):
        build_transform("bogus", 8)


def test_gpu_normalize_matches_cpu_path() -> None:
    clip = coordinate_clip(3, 32, 32)
    batch = torch.stack([clip, clip.flip(-1)])
    out = GpuNormalize()(batch)
    assert out.shape == (2, 3, 3, 32, 32)
    assert torch.allclose(out[0], normalize(clip), atol=1e-6)
    assert torch.allclose(out[1], normalize(clip.flip(-1)), atol=1e-6)
    assert GpuNormalize(16)(batch).shape == (2, 3, 3, 16, 16)


def test_decode_then_transform_pipeline(tmp_path_factory: pytest.TempPathFactory) -> None:
    path: Path = make_videos(tmp_path_factory)["hd"]  # 128 x 64
    clip = read_clip(path, 2, size=32)  # shorter side resized on decode
    out = EvalTransform(32)(clip)
    assert out.shape == (2, 3, 32, 32)
    assert torch.allclose(out, normalize(clip[..., 16:48]))  # centre crop of the 64-wide decode


def test_frame_random_crop_draws_one_window_per_frame() -> None:
    from violetv2.data.transforms import FrameRandomCropTransform

    clip = torch.arange(6 * 3 * 32 * 48, dtype=torch.int64).remainder(251).to(torch.uint8).view(6, 3, 32, 48)
    out = FrameRandomCropTransform(32, normalize=False)(clip, torch.Generator().manual_seed(0))
    assert out.shape == (6, 3, 32, 32) and out.dtype == torch.uint8
    offsets = set()
    for frame, crop in zip(clip, out):
        found = [x for x in range(17) if torch.equal(frame[:, :, x : x + 32], crop)]  # shorter side is 32
        assert found
        offsets.add(found[0])
    assert len(offsets) > 1  # not one crop for the clip
    assert isinstance(build_transform("frame_random_crop", 8), FrameRandomCropTransform)
    assert isinstance(build_transform("center_crop", 8), EvalTransform)
