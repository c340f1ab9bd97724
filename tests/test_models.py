import subprocess
import sys

import pytest
import torch

from violetv2.config import VioletConfig
from violetv2.models import VideoSwin, VioletModel, bidirectional_mask, seq2seq_mask
from violetv2.models.video_swin import relative_position_index, window_sizes


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return VioletModel.published(VioletConfig.from_name("tiny")).eval()


def _inputs(b=2, t=4, size=64, length=10):
    g = torch.Generator().manual_seed(0)
    video = torch.randn(b, t, 3, size, size, generator=g)
    ids = torch.randint(5, 1000, (b, length), generator=g)
    mask = torch.ones(b, length, dtype=torch.long)
    mask[1, 6:] = 0
    return video, ids, mask


def test_models_import_without_lightning():
    code = "import sys, violetv2.models; assert 'lightning' not in sys.modules and 'pytorch_lightning' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_backbone_shapes_and_slices(tiny):
    video, ids, mask = _inputs()
    fused = tiny(video, ids, mask)
    assert fused.hidden.shape == (2, 4 * 5 + 10, 64) and fused.num_video_tokens == 20
    assert fused.cls.shape == (2, 64) and torch.equal(fused.cls, fused.hidden[:, 20])
    assert fused.video_patches.shape == (2, 4, 4, 64)
    assert tiny.mlm_logits(fused).shape == (2, 10, 1024) and tiny.vtm_logits(fused).shape == (2,)
    assert tiny.mvm_heads["sif"](fused.video_patches).shape == (2, 4, 4, 128)


def test_text_padding_is_masked(tiny):
    video, ids, mask = _inputs()
    changed = ids.clone()
    changed[1, 7:] = 3  # only padding positions of sample 1 change
    a, b = tiny(video, ids, mask), tiny(video, changed, mask)
    assert torch.allclose(a.hidden[1, :26], b.hidden[1, :26], atol=1e-6)
    assert not torch.allclose(a.hidden[1, :26], tiny(video, changed, torch.ones_like(mask)).hidden[1, :26])


def test_seq2seq_mask_rules():
    vm = torch.ones(2, 3, dtype=torch.long)
    tm = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    m = seq2seq_mask(vm, tm)[:, 0]
    assert m.shape == (2, 7, 7)
    assert m[:, :3, :3].all() and not m[:, :3, 3:].any()  # video rows: video only
    assert m[:, 3:, :3].all()  # text rows see all video
    assert torch.equal(m[0, 3:, 3:], torch.ones(4, 4, dtype=torch.bool).tril())  # causal, padding ignored
    assert bidirectional_mask(vm, tm)[0, 0, 0].tolist() == [True] * 5 + [False] * 2


def test_seq2seq_text_is_causal(tiny):
    video, ids, mask = _inputs()
    later = ids.clone()
    later[:, 5:] = 7
    a = tiny(video, ids, mask, mode="seq2seq")
    b = tiny(video, later, mask, mode="seq2seq")
    assert torch.allclose(a.hidden[:, : 20 + 5], b.hidden[:, : 20 + 5], atol=1e-6)
    assert not torch.allclose(a.hidden[:, 25:], b.hidden[:, 25:])


def test_frame_order_matters_and_batch_independence(tiny):
    video, ids, mask = _inputs()
    a = tiny(video, ids, mask)
    b = tiny(video.flip(1), ids, mask)
    assert (a.cls - b.cls).abs().max() > 1e-4
    single = tiny(video[:1], ids[:1], mask[:1])
    assert torch.allclose(single.hidden, a.hidden[:1], atol=1e-5)


def test_window_clipping_and_index():
    assert window_sizes((4, 56, 56), (8, 7, 7), (4, 3, 3)) == ((4, 7, 7), (0, 3, 3))
    assert window_sizes((16, 7, 7), (8, 7, 7), (4, 3, 3)) == ((8, 7, 7), (4, 0, 0))
    full = relative_position_index((8, 7, 7), (8, 7, 7))
    assert full.shape == (392, 392) and full.max() == 15 * 13 * 13 - 1
    # clipping time only equals slicing the full index (what the published model does)
    assert torch.equal(relative_position_index((4, 7, 7), (8, 7, 7)), full[:196, :196])


@pytest.mark.parametrize("stride, frames, expected_t", [(1, 4, 4), (1, 1, 1), (2, 4, 2), (2, 5, 3)])
def test_temporal_stride(stride, frames, expected_t):
    swin = VideoSwin(16, (1, 1, 1, 1), (1, 2, 2, 4), (2, 4, 4), temporal_stride=stride).eval()
    out = swin(torch.randn(1, 3, frames, 64, 64))
    assert out.shape == (1, 128, expected_t, 2, 2)


def test_odd_sizes_and_long_clips_run():
    cfg = VioletConfig.from_name("tiny", num_frames=6, max_grid=4)
    model = VioletModel(cfg).eval()
    fused = model(torch.randn(1, 6, 3, 64, 96), torch.ones(1, 4, dtype=torch.long), torch.ones(1, 4))
    assert fused.grid == (2, 3) and fused.video_patches.shape == (1, 6, 6, 64)
    swin = VideoSwin(16, (1, 1, 1, 1), (1, 2, 2, 4), (2, 3, 3)).eval()
    assert swin(torch.randn(1, 3, 5, 70, 50)).shape == (1, 128, 5, 3, 2)  # padding for sizes not divisible


def test_spatial_interpolation_option():
    cfg = VioletConfig.from_name("tiny", spatial_pos="interpolate", max_grid=4)
    model = VioletModel(cfg).eval()
    table = model.backbone.video.spatial_table(2, 2)
    assert table.shape == (1, 1, 5, 64)
    assert not torch.allclose(table, model.backbone.video.spatial_pos[:, :, :5])
    flat = VioletModel(VioletConfig.from_name("tiny")).backbone.video
    assert torch.equal(flat.spatial_table(2, 2), flat.spatial_pos[:, :, :5])


def test_gradient_checkpointing_matches():
    torch.manual_seed(0)
    model = VioletModel(VioletConfig.from_name("tiny", dropout=0.0, attention_dropout=0.0))
    video, ids, mask = _inputs()
    loss = model.vtm_logits(model(video, ids, mask)).sum()
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad()
    model.backbone.set_gradient_checkpointing(True)
    loss2 = model.vtm_logits(model(video, ids, mask)).sum()
    loss2.backward()
    assert torch.allclose(loss, loss2)
    for g, p in zip(grads, [p for p in model.parameters() if p.grad is not None]):
        assert torch.allclose(g, p.grad, atol=1e-5)


def test_attention_received_sums_to_queries(tiny):
    video, ids, mask = _inputs()
    fused = tiny.backbone(video, ids, mask, return_attention=True)
    n = fused.hidden.shape[1]
    # each layer's head-averaged rows sum to 1 over keys -> total over keys = layers * queries
    assert torch.allclose(fused.attention.sum(1), torch.full((2,), 2.0 * n), atol=1e-3)
    assert (fused.attention[1, 26:] == 0).all()  # padding keys receive nothing
    plain = tiny.backbone(video, ids, mask)
    assert torch.allclose(plain.hidden, fused.hidden, atol=1e-5)
