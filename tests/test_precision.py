"""MVM targets and teachers under bf16 autocast: computed in float32 whatever the training precision.

Tolerance: a target computed inside ``torch.autocast("cpu", torch.bfloat16)`` must equal its float32 value
within ``ATOL = 1e-6`` (float targets) and exactly (VQ codes): autocast is switched off inside the targets, so
the same float32 kernels run. Before the fix HOG failed at 64 px (``index 576 is out of bounds``) and differed
by up to 1.0 at 224 px; the teachers ran their matmuls in bfloat16 (errors ~1e-2).
"""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from test_targets import OPTIONS, teacher_dirs  # noqa: F401  (teacher_dirs is a fixture)
from violetv2.callbacks.teachers import MVMTeacherCallback
from violetv2.data.batch import VideoTextBatch
from violetv2.mvm import hog as hog_ops
from violetv2.mvm.targets import TARGETS
from violetv2.tasks.pretrain import PretrainModule

ATOL = 1e-6
BF16 = {"device_type": "cpu", "dtype": torch.bfloat16}

# every target; hog_release is the published release's target (scikit-image HOG visualisation)
CASES = {
    "pixel": ("pixel", {}),
    "hog": ("hog", {}),
    "hog_release": ("hog", {"variant": "skimage"}),
    "depth": ("depth", None),
    "flow": ("flow", None),
    "vq": ("vq", None),
    "sif": ("sif", None),
    "clip": ("clip", None),
    "vidswin": ("vidswin", None),
}


def _target(case: str, dirs: dict[str, str]):
    name, options = CASES[case]
    return TARGETS[name](**(OPTIONS[name](dirs) if options is None else options))


def _video(size: int = 64, b: int = 2, t: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, t, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_the_autocast_of_these_tests_is_active() -> None:
    """Guards the tests below: under this context a plain matmul does run in bfloat16 on this machine."""
    with torch.autocast(**BF16):
        assert torch.nn.Linear(4, 4)(torch.randn(2, 4)).dtype == torch.bfloat16


@pytest.mark.parametrize("case", sorted(CASES))
def test_target_under_bf16_autocast_matches_fp32(case: str, teacher_dirs: dict[str, str]) -> None:  # noqa: F811
    target = _target(case, teacher_dirs)
    video = _video() * (0.05 if case == "flow" else 1.0)
    reference = target.compute(video)
    with torch.autocast(**BF16):
        under = target.compute(video)
    if case == "vq":
        assert under.dtype == torch.long and torch.equal(under, reference)
        return
    assert reference.dtype == under.dtype == torch.float32
    assert torch.isfinite(under).all()
    assert (under - reference).abs().max().item() <= ATOL, case


@pytest.mark.parametrize("variant", ["maskfeat", "skimage"])
def test_hog_at_224_px_under_bf16_autocast(variant: str) -> None:
    """The issue's case: 224-px frames, where a bfloat16 flat bin index is off by whole cells."""
    target = TARGETS["hog"](variant=variant)
    video = _video(224, b=1, t=2, seed=3)
    reference = target.compute(video)
    with torch.autocast(**BF16):
        under = target.compute(video)
    assert under.dtype == torch.float32 and (under - reference).abs().max().item() <= ATOL


def test_hog_functions_compute_low_precision_inputs_in_fp32() -> None:
    """bf16 gradients or frames are histogrammed in float32 (int64 bin index), not in their own dtype."""
    rgb = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    g_row, g_col = hog_ops.image_gradients(rgb, "central")
    low = (g_row.bfloat16(), g_col.bfloat16())
    got = hog_ops.orientation_histograms(*low)
    assert got.dtype == torch.float32
    assert torch.equal(got, hog_ops.orientation_histograms(low[0].float(), low[1].float()))
    with torch.autocast(**BF16):
        feat = hog_ops.maskfeat_hog(rgb)
        vis = hog_ops.hog_visualisation(hog_ops.to_gray(rgb))
    assert torch.equal(feat, hog_ops.maskfeat_hog(rgb)) and torch.equal(
        vis, hog_ops.hog_visualisation(hog_ops.to_gray(rgb))
    )
    assert hog_ops.skimage_hog(rgb.double()).dtype == torch.float64  # float64 stays float64


def test_teacher_runs_in_its_declared_dtype(teacher_dirs: dict[str, str]) -> None:  # noqa: F811
    """A teacher stored in bfloat16 is fed bfloat16 and its features come back as float32 (no dtype error)."""
    target = _target("sif", teacher_dirs)
    video = _video()
    reference = target.compute(video)
    target.teacher.to(torch.bfloat16)
    assert target.dtype == torch.bfloat16
    with torch.autocast(**BF16):
        low = target.compute(video)
    assert low.dtype == torch.float32
    scale = reference.abs().max().item()
    assert 0 < (low - reference).abs().max().item() <= 0.05 * scale  # bf16 rounding, nothing worse


# ------------------------------------------------------------------ a full training step under bf16-mixed


def _batches(n: int, b: int = 4, t: int = 2) -> list[VideoTextBatch]:
    out = []
    for i in range(n):
        g = torch.Generator().manual_seed(i)
        ids = torch.randint(1000, 1020, (b, 10), generator=g)
        ids[:, 0], ids[:, 7], ids[:, 8:] = 101, 102, 0  # [CLS] ... [SEP] [PAD] [PAD] (bert ids)
        video = torch.randn(b, t, 3, 64, 64, generator=g)
        out.append(VideoTextBatch(video=video, text_ids=ids, text_mask=(ids != 0).long()))
    return out


def test_pretraining_steps_under_bf16_mixed(teacher_dirs: dict[str, str], tmp_path) -> None:  # noqa: F811
    torch.manual_seed(0)
    module = PretrainModule(
        preset="tiny",
        mvm_targets={"sif": 1.0, "hog": 1.0},
        mvm_target_options={"sif": OPTIONS["sif"](teacher_dirs)},
        masking=["random", "blockwise"],
        lr=1e-3,
    )
    seen: list[tuple[bool, dict[str, torch.dtype]]] = []
    compute = module.mvm_targets.compute

    def recording_compute(video: torch.Tensor) -> dict[str, torch.Tensor]:
        out = compute(video)
        seen.append((torch.is_autocast_enabled("cpu"), {k: v.dtype for k, v in out.items()}))
        return out

    module.mvm_targets.compute = recording_compute
    losses: list[float] = []

    class Losses(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
            losses.append(float(outputs["loss"]))

    trainer = L.Trainer(
        max_steps=2, accelerator="cpu", precision="bf16-mixed", logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path,
        callbacks=[MVMTeacherCallback(), Losses()],
    )  # fmt: skip
    trainer.fit(module, DataLoader(_batches(2), batch_size=None))
    assert trainer.global_step == 2 and len(losses) == 2
    assert all(math.isfinite(x) for x in losses), losses
    assert len(seen) == 2 and all(active for active, _ in seen)  # the step did run under autocast ...
    assert all(d == {"sif": torch.float32, "hog": torch.float32} for _, d in seen)  # ... the targets did not
    assert all(torch.isfinite(p).all() for p in module.parameters())
