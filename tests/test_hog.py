"""Batched torch HOG against scikit-image on real photos, and the MaskFeat descriptor's invariants."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from violetv2.mvm.hog import (
    hog_visualisation,
    image_gradients,
    line_stencils,
    maskfeat_hog,
    orientation_histograms,
    skimage_hog,
    to_gray,
)

skimage = pytest.importorskip("skimage")
from skimage import color, data, draw, feature  # noqa: E402

SK = {"orientations": 9, "pixels_per_cell": (8, 8), "cells_per_block": (1, 1), "block_norm": "L2"}


def _photos() -> list[np.ndarray]:
    """Two real RGB photos shipped with scikit-image, cropped to non-multiples of 8 (partial cells dropped)."""
    return [data.astronaut()[100:330, 140:390], data.chelsea()[:220, :300]]


@pytest.mark.parametrize("index", [0, 1])
def test_descriptor_matches_skimage_on_real_photos(index: int) -> None:
    gray = color.rgb2gray(_photos()[index])  # float64 in [0, 1]
    ref = feature.hog(gray, feature_vector=False, **SK)[:, :, 0, 0]  # [rows, cols, 9]
    ours = skimage_hog(torch.from_numpy(gray)[None, None])[0].numpy()
    assert ours.shape == ref.shape
    # skimage accumulates each cell in float32 (Cython `float total`): ~1e-7 is its own rounding
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    ours32 = skimage_hog(torch.from_numpy(gray).float()[None, None])[0].numpy()
    np.testing.assert_allclose(ours32, ref, atol=2e-5)


def test_visualisation_matches_skimage() -> None:
    gray = color.rgb2gray(_photos()[0])
    _, ref = feature.hog(gray, visualize=True, **SK)
    ours = hog_visualisation(torch.from_numpy(gray)[None, None])[0, 0].numpy()
    assert ours.shape == ref.shape and ref.max() > 0.1
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_multichannel_uses_the_dominant_channel_like_skimage() -> None:
    rgb = _photos()[1].astype(np.float64) / 255
    ref = feature.hog(rgb, feature_vector=False, channel_axis=-1, **SK)[:, :, 0, 0]
    ours = skimage_hog(torch.from_numpy(rgb).permute(2, 0, 1)[None])[0].numpy()
    # where two channels' gradients have the same length up to rounding, the winner depends on the last bit
    # of hypot (np.hypot vs torch.hypot): leave out the cells where the chosen channel differs; must be rare
    grads = [_sk_gradient(rgb[..., ch]) for ch in range(3)]
    sk_choice = np.stack([np.hypot(*g) for g in grads], -1).argmax(-1)
    t_grads = [[torch.from_numpy(x) for x in g] for g in grads]
    our_choice = torch.stack([torch.hypot(*g) for g in t_grads]).argmax(0).numpy()
    rows, cols = ref.shape[:2]
    differs = (sk_choice != our_choice)[: rows * 8, : cols * 8]
    tie_cells = differs.reshape(rows, 8, cols, 8).any((1, 3))
    assert tie_cells.mean() < 0.01
    np.testing.assert_allclose(ours[~tie_cells], ref[~tie_cells], atol=1e-6)


def _sk_gradient(channel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    g_row, g_col = np.zeros_like(channel), np.zeros_like(channel)
    g_row[1:-1] = channel[2:] - channel[:-2]
    g_col[:, 1:-1] = channel[:, 2:] - channel[:, :-2]
    return g_row, g_col


def test_batch_equals_per_image() -> None:
    grays = torch.stack([torch.from_numpy(color.rgb2gray(p[:216, :216])) for p in _photos()])[:, None]
    batched = skimage_hog(grays)
    for i in range(2):
        torch.testing.assert_close(batched[i], skimage_hog(grays[i : i + 1])[0])


def test_line_stencils_are_skimage_lines() -> None:
    st = line_stencils(9, 8)
    for o in range(9):
        mid = np.pi * (o + 0.5) / 9
        dr, dc = 3 * np.sin(mid), 3 * np.cos(mid)
        rr, cc = draw.line(int(4 - dc), int(4 + dr), int(4 + dc), int(4 - dr))
        expected = np.zeros((8, 8))
        expected[rr, cc] = 1
        np.testing.assert_array_equal(st[o].numpy(), expected)


def test_gray_weights_match_skimage() -> None:
    rgb = _photos()[0].astype(np.float64) / 255
    ours = to_gray(torch.from_numpy(rgb).permute(2, 0, 1)[None])[0, 0].numpy()
    np.testing.assert_allclose(ours, color.rgb2gray(rgb), atol=1e-12)


def test_histogram_of_a_ramp_has_one_bin() -> None:
    ramp = torch.arange(32.0).repeat(16, 1)[None, None]  # intensity grows along columns: angle 0
    hist = orientation_histograms(*image_gradients(ramp, "central"))
    assert hist.shape == (1, 1, 9, 2, 4)
    assert hist[0, 0, 1:].abs().max() == 0 and hist[0, 0, 0].min() > 0
    vertical = ramp.transpose(-1, -2)  # grows along rows: 90 degrees -> bin 4
    hist_v = orientation_histograms(*image_gradients(vertical, "central"))
    assert hist_v[0, 0].argmax(0).eq(4).all()


def test_maskfeat_descriptor_shape_and_unit_cells() -> None:
    rgb = torch.from_numpy(_photos()[0][:224, :224].copy()).permute(2, 0, 1)[None].float() / 255
    out = maskfeat_hog(rgb)
    assert out.shape == (1, 27, 28, 28)
    norms = out.view(1, 3, 9, 28, 28).norm(dim=2)
    assert (norms <= 1 + 1e-5).all()  # ||v|| / sqrt(||v||^2 + eps^2) < 1: only near-flat cells fall short
    assert (norms > 0.999).float().mean() > 0.95
    # channels are independent: changing only blue leaves the red/green histograms untouched
    changed = rgb.clone()
    changed[:, 2] = changed[:, 2].flip(-1)
    out2 = maskfeat_hog(changed)
    torch.testing.assert_close(out2[:, :18], out[:, :18])
    assert (out2[:, 18:] - out[:, 18:]).abs().max() > 0.1


def test_bad_gradient_kind() -> None:
    with pytest.raises(ValueError, match="gradient kind"):
        image_gradients(torch.zeros(1, 1, 8, 8), "scharr")  # type: ignore[arg-type]
