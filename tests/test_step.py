"""The fast training-step paths: shifted-window attention kernels and checkpointing granularity."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from violetv2.config import VioletConfig
from violetv2.models import VioletModel
from violetv2.models.video_swin import SwinBlock3D, window_attention


def _reference(q, k, v, bias):
    """The old path: the bias repeated per window, SDPA."""
    nw = bias.shape[0]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.repeat(q.shape[0] // nw, 1, 1, 1))


@pytest.mark.parametrize("nw", [1, 3])
@pytest.mark.parametrize("grad", [True, False])
def test_window_attention_matches_repeated_bias(nw, grad):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2 * nw, 2, 12, 8, generator=g, requires_grad=grad) for _ in range(3))
    bias = torch.randn(nw, 2, 12, 12, generator=g, requires_grad=grad)
    with torch.set_grad_enabled(grad):
        out = window_attention(q, k, v, bias)
        ref = _reference(q, k, v, bias)
    assert torch.allclose(out, ref, atol=1e-5)
    if grad:
        w = torch.randn_like(out)
        got = torch.autograd.grad((out * w).sum(), (q, k, v, bias))
        want = torch.autograd.grad((ref * w).sum(), (q, k, v, bias))
        for a, b in zip(got, want):
            assert torch.allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError, match="whole number"):
        window_attention(q[:-1], k[:-1], v[:-1], torch.zeros(2, 2, 12, 12))


def test_shifted_block_gradients_match_in_train_and_eval():
    """A shifted block gives the same output with (explicit kernel) and without (SDPA) gradients."""
    torch.manual_seed(0)
    block = SwinBlock3D(16, 2, (2, 4, 4), (1, 2, 2), 2.0, 0.0, 1e-5)
    x = torch.randn(2, 4, 8, 8, 16)
    with torch.no_grad():
        sdpa = block(x)
    explicit = block(x)
    assert torch.allclose(explicit, sdpa, atol=1e-5)
    explicit.square().sum().backward()
    assert block.attn.relative_position_bias_table.grad.abs().sum() > 0


def _checkpointed(model):
    swin = [s.gradient_checkpointing for s in model.backbone.video.swin.layers]
    return all(swin), model.backbone.fusion.gradient_checkpointing


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("none", (False, False)),
        ("video", (True, False)),
        ("fusion", (False, True)),
        ("all", (True, True)),
        (True, (True, True)),  # the old bool: True = everything
        (False, (False, False)),
    ],
)
def test_checkpointing_granularity(mode, expected):
    cfg = VioletConfig.from_name("tiny", gradient_checkpointing=mode)
    assert cfg.gradient_checkpointing in ("none", "video", "fusion", "all")
    model = VioletModel(cfg)
    assert _checkpointed(model) == expected
    model.backbone.set_gradient_checkpointing("video")
    assert _checkpointed(model) == (True, False)


def test_checkpointing_modes_give_the_same_gradients():
    cfg = VioletConfig.from_name("tiny", dropout=0.0, attention_dropout=0.0)
    torch.manual_seed(0)
    model = VioletModel(cfg)
    video = torch.randn(2, 4, 3, 64, 64)
    ids = torch.randint(5, 100, (2, 8))
    grads = {}
    for mode in ("none", "video", "fusion", "all"):
        model.zero_grad()
        model.backbone.set_gradient_checkpointing(mode)
        fused = model(video, ids, torch.ones_like(ids))
        (model.vtm_logits(fused).sum() + fused.hidden.square().mean()).backward()
        grads[mode] = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    for mode in ("video", "fusion", "all"):
        for a, b in zip(grads[mode], grads["none"]):
            assert torch.allclose(a, b, atol=1e-5), mode


def test_checkpointing_value_is_checked():
    with pytest.raises(ValueError, match="gradient_checkpointing"):
        VioletConfig.from_name("tiny", gradient_checkpointing="swin")
