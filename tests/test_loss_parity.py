"""Loss parity with the published VIOLETv2 pre-training step (../shared/reference/parity_losses).

The fixture's weights are rebuilt by its own ``make_loss_state_dict.py`` (config A: student + pixel / HOG heads
+ the SIF teacher; the VQ head of config C from the same rule; the Video-Swin teacher of config B and the
DALL-E encoder of config C in the slow tests), the fixture's fixed MVM / MLM masks and VTM negatives are fed to
``PretrainModule.masked_losses`` (the training step after its random draws), and every recorded loss is
reproduced within the README's relative tolerance 2e-5.

What is computed here and what is read from the fixture:
- computed: the student's forward on the masked clip (one Video Swin pass, one fusion call), every head, every
  loss, the SIF target (our ``SIFTarget`` with the rebuilt teacher), the pixel target;
- read (fast test): the HOG picture (``hog.target``: scikit-image's multichannel HOG of the normalised frame,
  which our batched HOG does not reproduce), the Video-Swin teacher output ``vsf.target`` and the DALL-E tokens
  ``vq.target_tokens``; the two ``slow`` tests compute the latter two with our targets and the rebuilt teachers.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os

import pytest
import torch

from violetv2.convert.release import convert_release
from violetv2.data.batch import VideoTextBatch
from violetv2.mvm.targets import TARGETS, build_targets
from violetv2.mvm.teachers import freeze, sif_teacher_state_dict_from_release, swin_base_in22k_config
from violetv2.tasks.losses import IGNORE_INDEX, masked_mean, masked_sum_over
from violetv2.tasks.pretrain import PretrainModule

RTOL = 2e-5  # README section 6: losses relative 2e-5
MASKED_VIDEO_SHA = "c6643b65d863ba3ae5fe551ea7a74e6840990c9ccce8b95207be8b0355627e5b"
TARGET_NAMES = ("pixel", "hog", "sif", "vidswin", "vq")


def _load(folder: str, name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(folder, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fixture(reference_dir):
    from safetensors.torch import load_file

    folder = os.path.join(reference_dir, "parity_losses")
    ref = load_file(os.path.join(folder, "violetv2_parity_losses.safetensors"))
    ref["in.video"] = load_file(os.path.join(reference_dir, "parity", "violetv2_parity.safetensors"))[
        "in.video"
    ]
    return folder, ref, _load(folder, "make_loss_state_dict")


def _rebuild(maker, config: str, prefix: str) -> dict[str, torch.Tensor]:
    """Only the keys of ``config`` under ``prefix``, by the fixture's weight rule."""
    rand_param = maker.rand_param
    return {n: rand_param(n, s) for n, s in maker.keys(config) if n.startswith(prefix)}


@pytest.fixture(scope="module")
def module(fixture):
    """A PretrainModule holding the config-A student (pixel, HOG, SIF heads) + the config-C VQ head."""
    _, _, maker = fixture
    sd = maker.build("A")
    model, layout = convert_release(sd, source_name="parity_losses config A")
    assert layout.mvm == ("pixel", "hog_release", "sif")
    sif = transformers_swin(swin_base_in22k_config())
    sif.load_state_dict(sif_teacher_state_dict_from_release(sd), strict=True)
    del sd
    with torch.device("meta"):
        pm = PretrainModule(
            preset="violetv2-base",
            mvm_targets={n: 1.0 for n in TARGET_NAMES},
            mvm_target_options={
                "hog": {"variant": "skimage"},
                "sif": {"feature_dim": 1024},
                "vq": {"model_name_or_path": "unused"},
            },
        )
    heads = model.mvm_heads
    heads["hog"] = heads.pop("hog_release")
    heads["vidswin"] = heads["sif"]  # config B's fc_mvm: the same names, hence the same values, as A's
    vq = TARGETS["vq"]().build_head(model.cfg)
    vq_sd = _rebuild(maker, "C", "decoder_vq.") | _rebuild(maker, "C", "fc_mvm.")
    vq.load_state_dict(
        {
            "decoder.conv.weight": vq_sd["decoder_vq.0.weight"],
            "decoder.conv.bias": vq_sd["decoder_vq.0.bias"],
            "fc1.weight": vq_sd["fc_mvm.1.weight"],
            "fc1.bias": vq_sd["fc_mvm.1.bias"],
            "fc2.weight": vq_sd["fc_mvm.3.weight"],
            "fc2.bias": vq_sd["fc_mvm.3.bias"],
        }
    )
    heads["vq"] = vq
    pm.model, pm.cfg = model.eval(), model.cfg
    pm.mvm_targets["sif"]._teacher = freeze(sif)  # injected: the weights are the fixture's, not a file's
    return pm.eval()


def transformers_swin(config):
    from transformers import SwinModel

    return SwinModel(config, add_pooling_layer=False)


def _inputs(ref):
    labels = ref["mask.mlm_labels"].masked_fill(ref["mask.mlm_labels"] == -1, IGNORE_INDEX)
    pairs = torch.cat([torch.arange(2)[:, None], ref["vtm.neg_order"]], dim=1)  # [[0, 1], [1, 0]]
    batch = VideoTextBatch(video=ref["in.video"], text_ids=ref["in.txt_ids"], text_mask=ref["in.txt_mask"])
    return batch, ref["mask.patch"], ref["in.txt_ids_masked"], labels, pairs


@pytest.fixture(scope="module")
def losses(module, fixture):
    _, ref, _ = fixture
    batch, mask, masked_ids, labels, pairs = _inputs(ref)
    forward = module.joint_forward
    captured = {}

    def joint_forward(*args):
        captured["fused"], captured["vtm_logits"] = forward(*args)
        return captured["fused"], captured["vtm_logits"]

    module.joint_forward = joint_forward  # record the one forward, for the tests that reuse it
    with torch.no_grad():
        targets = {
            "pixel": module.mvm_targets["pixel"].compute(batch.video),
            "sif": module.mvm_targets["sif"].compute(batch.video),
            "hog": ref["hog.target"][:, :, None],  # [b, t, 1, h, w]
            "vidswin": ref["vsf.target"],
            "vq": ref["vq.target_tokens"],
        }
        out = module.masked_losses(batch, targets, mask, masked_ids, labels, pairs)
    module.joint_forward = forward
    return out, targets, captured["fused"], captured["vtm_logits"]


def test_forward_tensors_match(fixture, module, losses):
    """The fused matched pairs, VTM logits and head outputs at the masked patches (atol 1e-4)."""
    _, ref, _ = fixture
    _, _, fused, vtm_logits = losses
    b, t, h, w = ref["mask.patch_index"].unbind(1)
    heads = module.model.mvm_heads
    with torch.no_grad():
        grid = lambda x: x.unflatten(-2, (7, 32)).unflatten(-1, (7, 32)).movedim(-3, -2)  # noqa: E731
        got = {
            "c.cross_out_masked": fused.hidden,
            "d.out_vtm": vtm_logits / 0.05,
            "sif.pred_masked": heads["sif"](fused.video_patches)[b, t, h * 7 + w],
            "pixel.pred_masked": grid(heads["pixel"](fused.video_patches))[b, t, :, h, w],
            "hog.pred_masked": grid(heads["hog"](fused.video_patches)[:, :, 0])[b, t, h, w],
        }
    for name, value in got.items():
        assert value.shape == ref[name].shape, name
        assert (value - ref[name]).abs().max().item() <= 1e-4, name


def _close(value: torch.Tensor, ref: torch.Tensor) -> bool:
    return abs(value.item() - ref.item()) <= RTOL * abs(ref.item())


def test_masked_input_is_the_fixtures(fixture, module):
    _, ref, _ = fixture
    from violetv2.mvm.masking import apply_mask

    masked = apply_mask(ref["in.video"], ref["mask.patch"], module.cfg.video_stride)
    published = ref["in.video"] * (1 - _pixel_mask(ref["mask.patch"]).float())  # its `img *= 1 - cov`
    assert hashlib.sha256(published.numpy().tobytes()).hexdigest() == MASKED_VIDEO_SHA
    assert torch.equal(masked, published)  # bytes differ only in the sign of zero (-x * 0 = -0.0)


def test_sif_target_matches(fixture, losses):
    _, ref, _ = fixture
    b, t, h, w = ref["mask.patch_index"].unbind(1)
    got = losses[1]["sif"][b, t, h * 7 + w]
    assert (got - ref["sif.target_masked"]).abs().max().item() < 1e-4


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("vtm_loss", "loss.vtm"),
        ("mlm_loss", "loss.mtm"),
        ("mvm_pixel", "loss.mvm_pixel"),
        ("mvm_hog", "loss.mvm_hog"),
        ("mvm_sif", "loss.mvm_2d_feature"),
        ("mvm_vidswin", "loss.mvm_3d_feature"),
        ("mvm_vq", "loss.mvm_vq"),
        ("vtm_acc", "acc.vtm"),
        ("mlm_acc", "acc.mtm"),
        ("mvm_vq_acc", "acc.mvm_vq"),
    ],
)
def test_loss_matches_published(fixture, losses, ours, theirs):
    _, ref, _ = fixture
    out = losses[0]
    assert _close(out[ours], ref[theirs]), (ours, out[ours].item(), ref[theirs].item())


def test_totals_match_published(fixture, losses):
    _, ref, _ = fixture
    out = losses[0]
    step_a = out["mvm_pixel"] + out["mvm_hog"] + out["mvm_sif"]
    assert _close(step_a, ref["loss.step_sum_config_A"])
    assert _close(out["vtm_loss"] + out["mlm_loss"] + out["mvm_sif"], ref["loss.total_published_recipe"])
    # the module's weighted total: VTM + MLM + every MVM target at weight 1
    mvm = sum(out[f"mvm_{n}"] for n in TARGET_NAMES)
    assert torch.allclose(out["loss"], out["vtm_loss"] + out["mlm_loss"] + mvm)
    assert _close(out["loss"], ref["loss.total_published_recipe"] + ref["loss.mvm_pixel"] + ref["loss.mvm_hog"]
                  + ref["loss.mvm_3d_feature"] + ref["loss.mvm_vq"])  # fmt: skip


def test_mean_scale_is_the_fixtures_mean_l1(fixture, module, losses):
    """``loss_scale="mean"`` gives the fixture's plain masked means (and only rescales the MVM losses)."""
    _, ref, _ = fixture
    _, targets, fused, _ = losses
    mask = ref["mask.patch"]
    mean = build_targets({n: 1.0 for n in TARGET_NAMES}, {"hog": {"variant": "skimage"}}, loss_scale="mean")
    with torch.no_grad():
        preds = mean.predict(module.model.mvm_heads, fused.video_patches)
        got = mean.losses(preds, targets, mask)
    for ours, theirs in [
        ("pixel", "pixel"),
        ("hog", "hog"),
        ("sif", "2d_feature"),
        ("vidswin", "3d_feature"),
    ]:
        assert _close(got[f"mvm_{ours}"], ref[f"meanl1.{theirs}"]), ours
    assert _close(got["mvm_vq"], ref["loss.mvm_vq"])  # CE mean under both scales


def _pixel_mask(mask: torch.Tensor) -> torch.Tensor:
    from violetv2.mvm.masking import pixel_mask

    return pixel_mask(mask, 32)


# ------------------------------------------------------------------------- published reductions, unit level


def test_published_reduction_constants():
    """pixel 1/3, depth 1/3, flow 1/2, HOG 1, VQ 1 and feature targets C/3 times the masked mean."""
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(2, 3, 2, 2, dtype=torch.bool)
    mask[0, 1, 0, 1] = mask[1, 2, 1, 0] = mask[1, 0, 0, 0] = True
    ratios = {
        "pixel": 1 / 3,
        "hog": 1.0,
        "depth": 1 / 3,
        "flow": 1 / 2,
        "sif": 64 / 3,
        "clip": 16 / 3,
        "vq": 1.0,
    }
    shapes = {
        "pixel": (2, 3, 3, 64, 64),
        "hog": (2, 3, 27, 8, 8),
        "depth": (2, 3, 1, 64, 64),
        "flow": (2, 2, 2, 64, 64),
        "sif": (2, 3, 4, 64),
        "clip": (2, 3, 4, 16),
    }
    for name, ratio in ratios.items():
        published, mean = TARGETS[name](), TARGETS[name]()
        mean.loss_scale = "mean"
        if name == "vq":
            target = torch.randint(0, 16, (2, 3, 8, 8), generator=g)
            pred = torch.randn(2, 3, 8, 8, 16, generator=g)
        else:
            target = torch.randn(shapes[name], generator=g) * (0.1 if name == "flow" else 1.0)
            pred = torch.randn(shapes[name], generator=g)
        a, b = published.loss(pred, target, mask), mean.loss(pred, target, mask)
        assert torch.allclose(a, b * ratio, rtol=1e-5), name


def test_masked_sum_over_counts():
    values = torch.arange(12.0).reshape(1, 3, 4)
    mask = torch.tensor([[True, False, True]])
    assert masked_sum_over(values, mask, per="element").item() == pytest.approx(
        masked_mean(values, mask).item(),
        rel=2e-6,  # the published + 1e-5 in the count of 8
    )
    assert masked_sum_over(values, mask, per="position", divisor=2.0).item() == pytest.approx(
        (6 + 38) / 2 / 2, rel=1e-5
    )
    empty = masked_sum_over(values.requires_grad_(), torch.zeros(1, 3, dtype=torch.bool))
    assert empty.item() == 0.0 and empty.requires_grad
    with pytest.raises(ValueError, match="per"):
        masked_sum_over(values, mask, per="patch")


# ------------------------------------------------------------------------------------ teachers (slow)


@pytest.mark.slow
def test_vidswin_teacher_and_loss(fixture, module, losses, tmp_path):
    """Config B's Video-Swin-B teacher, rebuilt by the rule, through our VidSwinTarget (~90 M parameters)."""
    from safetensors.torch import save_file

    _, ref, maker = fixture
    sd = {
        k.removeprefix("feature_model."): v
        for k, v in _rebuild(maker, "B", "feature_model.").items()
        if not k.endswith("relative_position_index")
    }
    save_file(sd, str(tmp_path / "vidswin.safetensors"))
    target = TARGETS["vidswin"](str(tmp_path / "vidswin.safetensors"))
    y = target.compute(ref["in.video"])
    assert (y - ref["vsf.target"]).abs().max().item() < 1e-4
    with torch.no_grad():
        pred = module.model.mvm_heads["vidswin"](losses[2].video_patches)
        loss = target.loss(pred, y, ref["mask.patch"])
    assert _close(loss, ref["loss.mvm_3d_feature"])
