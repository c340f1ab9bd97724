import pytest
import torch

from violetv2.config import PRESETS, VioletConfig, preset_names
from violetv2.models import VioletModel


def test_presets_build_and_derive():
    base = VioletConfig.from_name("violetv2-base")
    assert (base.swin_out_dim, base.video_grid, base.tokens_per_frame, base.video_stride) == (1024, 7, 50, 32)
    assert base.swin_temporal_stride == 1 and base.swin_window == (8, 7, 7)
    v1 = VioletConfig.from_name("violet-v1-base")
    assert v1.swin_out_dim == 768 and not v1.video_projection
    tiny = VioletConfig.from_name("tiny")
    assert tiny.video_grid == 2 and set(preset_names()) == set(PRESETS)


def test_violetv2_base_parameter_count_on_meta():
    with torch.device("meta"):
        model = VioletModel.published(VioletConfig.from_name("violetv2-base"))
    ours = sum(p.numel() for p in model.parameters())
    assert ours == 225_477_379
    # The published state dict (minus teacher and index buffers) holds 225,508,669 elements: it lists the tied
    # MLM output bias twice (fc_mtm.predictions.bias == ...decoder.bias, 30,522) and an unused emb_odr (768).
    assert ours + 30_522 + 768 == 225_508_669


def test_tiny_is_small():
    model = VioletModel.published(VioletConfig.from_name("tiny"))
    assert 100_000 < sum(p.numel() for p in model.parameters()) < 5_000_000


def test_overrides_and_round_trip():
    cfg = VioletConfig.from_name("tiny", num_frames=2, spatial_pos="interpolate")
    assert VioletConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"image_size": 100}, "multiple of the total stride 32"),
        ({"num_frames": 7}, "temporal table"),
        ({"hidden_size": 100}, "not divisible by num_heads"),
        ({"swin_heads": (4, 8, 16)}, "swin_heads has 3"),
        ({"swin_temporal_stride": 3}, "swin_temporal_stride"),
        ({"image_size": 480}, "spatial positions"),
        ({"video_projection": False}, "video_projection=False"),
    ],
)
def test_contradictory_configs_fail_clearly(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VioletConfig.from_name("violetv2-base", **kwargs)


def test_unknown_preset_and_field():
    with pytest.raises(ValueError, match="unknown preset 'violet-huge'.*tiny"):
        VioletConfig.from_name("violet-huge")
    with pytest.raises(ValueError, match="num_frame"):
        VioletConfig.from_name("tiny", num_frame=4)


def test_config_imports_without_torch():
    import subprocess
    import sys

    code = "import sys; import violetv2.config; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
