"""MVM targets: shapes, masked losses, trainable heads, tiny teachers loaded for real, SIF parity, callback."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import lightning as L
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from violetv2.callbacks.teachers import MVMTeacherCallback
from violetv2.config import VioletConfig
from violetv2.mvm.targets import (
    TARGETS,
    FlowTarget,
    MVMTargets,
    SIFTarget,
    build_targets,
    expand_mask,
)
from violetv2.mvm.teachers import (
    installed_swin_scheme,
    perceiver_flow,
    sif_teacher_state_dict_from_release,
    swin_base_in22k_config,
)

transformers = pytest.importorskip("transformers")

PARITY = Path(__file__).resolve().parents[2] / "shared" / "reference" / "parity"
CFG = VioletConfig.from_name("tiny")  # 64 px, grid 2x2, hidden 64
B, T = 2, 3


@pytest.fixture(scope="module")
def teacher_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Tiny random teachers of every kind, written with save_pretrained (loaded back by the real code)."""
    root = tmp_path_factory.mktemp("teachers")
    torch.manual_seed(0)
    models = {
        "sif": transformers.SwinModel(
            transformers.SwinConfig(
                image_size=64, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=2
            )
        ),
        "clip": transformers.CLIPVisionModel(
            transformers.CLIPVisionConfig(
                hidden_size=16,
                intermediate_size=32,
                num_hidden_layers=1,
                num_attention_heads=2,
                image_size=64,
                patch_size=32,
            )
        ),
        "depth": transformers.DPTForDepthEstimation(
            transformers.DPTConfig(
                hidden_size=32,
                num_hidden_layers=4,
                num_attention_heads=2,
                intermediate_size=64,
                image_size=64,
                patch_size=8,
                backbone_out_indices=[0, 1, 2, 3],
                neck_hidden_sizes=[8, 16, 32, 32],
                fusion_hidden_size=16,
                reassemble_factors=[4, 2, 1, 0.5],
            )  # fmt: skip
        ),
        "vq": transformers.FlavaImageCodebook(
            transformers.FlavaImageCodebookConfig(
                hidden_size=8, num_groups=4, num_blocks_per_group=1, vocab_size=16
            )
        ),
        "flow": transformers.PerceiverForOpticalFlow(
            transformers.PerceiverConfig(
                num_latents=8,
                d_latents=16,
                d_model=32,
                num_blocks=1,
                num_self_attends_per_block=1,
                num_self_attention_heads=1,
                num_cross_attention_heads=1,
                train_size=[32, 48],
            )  # fmt: skip
        ),
    }
    out = {}
    for name, model in models.items():
        model.save_pretrained(root / name)
        out[name] = str(root / name)
    out["vidswin"] = _save_vidswin(root / "vidswin.safetensors")
    return out


def _save_vidswin(path: Path) -> str:
    from violetv2.models.video_swin import VideoSwin

    c = VioletConfig.from_name("tiny")
    model = VideoSwin(
        c.swin_embed_dim, c.swin_depths, c.swin_heads, c.swin_window, c.swin_patch, c.swin_temporal_stride
    )
    save_file({f"backbone.{k}": v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return str(path)


OPTIONS = {
    "sif": lambda d: {"model_name_or_path": d["sif"]},
    "clip": lambda d: {"model_name_or_path": d["clip"]},
    "depth": lambda d: {"model_name_or_path": d["depth"], "input_size": 64},
    "vq": lambda d: {"model_name_or_path": d["vq"], "num_codes": 16},
    "flow": lambda d: {"model_name_or_path": d["flow"]},
    "vidswin": lambda d: {"model_name_or_path": d["vidswin"], "preset": "tiny", "key_prefix": "backbone."},
    "pixel": lambda d: {},
    "hog": lambda d: {},
}

# expected target shapes for the tiny preset (64 px, b=2, t=3)
SHAPES = {
    "pixel": (B, T, 3, 64, 64),
    "hog": (B, T, 27, 8, 8),
    "depth": (B, T, 1, 64, 64),
    "flow": (B, T - 1, 2, 64, 64),
    "vq": (B, T, 8, 8),
    "sif": (B, T, 4, 64),
    "clip": (B, T, 4, 16),
    "vidswin": (B, T, 4, 128),
}


def make(name: str, dirs: dict[str, str]):
    return TARGETS[name](**OPTIONS[name](dirs))


def _video(size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(B, T, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _patches(seed: int = 1) -> torch.Tensor:
    return torch.randn(
        B, T, CFG.video_grid**2, CFG.hidden_size, generator=torch.Generator().manual_seed(seed)
    )


def _mask() -> torch.Tensor:
    m = torch.zeros(B, T, 2, 2, dtype=torch.bool)
    m[:, :, 0, 1] = True
    m[0, 1, 1, 0] = True
    return m


def test_registry_has_the_eight_targets() -> None:
    assert set(TARGETS) == {"pixel", "hog", "depth", "flow", "vq", "sif", "clip", "vidswin"}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_compute_and_head_shapes(name: str, teacher_dirs: dict[str, str]) -> None:
    target = make(name, teacher_dirs)
    y = target.compute(_video())
    assert tuple(y.shape) == SHAPES[name]
    assert not y.requires_grad and torch.isfinite(y.float()).all()
    head = target.build_head(CFG)
    pred = target.predict(head, _patches())
    assert tuple(pred.shape[: y.dim()]) == tuple(y.shape)
    if name == "vq":
        assert y.dtype == torch.long and pred.shape[-1] == 16 and int(y.max()) < 16
    if target.teacher is not None:
        assert not target.teacher.training
        assert not any(p.requires_grad for p in target.teacher.parameters())


def _perturb_at(pred: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """pred + a ramp along the last axis where the (broadcastable) bool `where` is True (not CE-invariant)."""
    return pred + where.to(pred.dtype) * torch.linspace(0.5, 2.0, pred.shape[-1])


def _expanded_mask(name: str, mask: torch.Tensor, y: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    if name in ("sif", "clip", "vidswin"):
        return mask.flatten(2)[..., None]
    if name == "vq":
        return expand_mask(mask, tuple(y.shape[-2:]))[:, :, 0, ..., None]
    if name == "flow":
        return expand_mask(mask[:, :-1] | mask[:, 1:], tuple(y.shape[-2:]))
    return expand_mask(mask, tuple(y.shape[-2:]))


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_loss_only_on_masked_positions(name: str, teacher_dirs: dict[str, str]) -> None:
    target = make(name, teacher_dirs)
    video = _video() * (0.05 if name == "flow" else 1.0)
    y = target.compute(video)
    if name == "flow":  # random teacher: make the clip valid explicitly
        y = y.clamp(-1, 1)
    mask = _mask()
    pred = target.predict(target.build_head(CFG).eval(), _patches()).detach()
    where = _expanded_mask(name, mask, y, pred)
    base = target.loss(pred, y, mask)
    assert base.dim() == 0 and torch.isfinite(base)
    assert torch.allclose(target.loss(_perturb_at(pred, ~where), y, mask), base, atol=1e-6)
    assert not torch.allclose(target.loss(_perturb_at(pred, where), y, mask), base, atol=1e-4)
    # a dropped sample does not count
    valid = torch.tensor([True, False])
    only0 = target.loss(pred, y, mask, valid)
    changed = pred.clone()
    changed[1] += 5.0
    assert torch.allclose(target.loss(changed, y, mask, valid), only0, atol=1e-6)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_a_few_steps_reduce_the_loss(name: str, teacher_dirs: dict[str, str]) -> None:
    torch.manual_seed(0)
    target = make(name, teacher_dirs)
    video = _video() * (0.05 if name == "flow" else 1.0)
    y = target.compute(video)
    if name == "flow":
        y = y.clamp(-1, 1)
    head = target.build_head(CFG).eval()  # eval: no dropout noise in the comparison
    patches, mask = _patches(), _mask()
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    losses = []
    for _ in range(6):
        loss = target.loss(target.predict(head, patches), y, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0], losses


def test_224_px_shapes(teacher_dirs: dict[str, str]) -> None:
    cfg = VioletConfig.from_name("tiny", image_size=224, max_grid=7)
    video = torch.randn(1, 2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    patches = torch.randn(1, 2, 49, cfg.hidden_size)
    expected = {
        "pixel": (1, 2, 3, 224, 224),
        "hog": (1, 2, 27, 28, 28),
        "sif": (1, 2, 49, 64),
        "clip": (1, 2, 49, 16),
    }
    for name, shape in expected.items():
        target = make(name, teacher_dirs)
        assert tuple(target.compute(video).shape) == shape, name
        assert tuple(target.predict(target.build_head(cfg), patches).shape) == shape, name
    vq = make("vq", teacher_dirs)
    assert tuple(vq.compute(video).shape) == (1, 2, 28, 28)
    assert tuple(vq.build_head(cfg)(patches).shape) == (1, 2, 28, 28, 16)


def test_pixel_patch_normalisation() -> None:
    y = TARGETS["pixel"](normalize_patches=True).compute(_video())
    patch = y[0, 0, 1, :32, 32:]
    assert abs(patch.mean().item()) < 1e-5 and abs(patch.std(unbiased=False).item() - 1) < 1e-3
    assert torch.equal(TARGETS["pixel"]().compute(_video()), _video())


def test_hog_skimage_variant_is_dense_one_channel() -> None:
    target = TARGETS["hog"](variant="skimage")
    y = target.compute(_video())
    assert tuple(y.shape) == (B, T, 1, 64, 64) and (y >= 0).all() and y.max() > 0
    assert tuple(target.build_head(CFG)(_patches()).shape) == (B, T, 1, 64, 64)
    with pytest.raises(ValueError, match="variant"):
        TARGETS["hog"](variant="dalal")


def test_flow_drops_fast_clips_and_single_frames(teacher_dirs: dict[str, str]) -> None:
    flow = make("flow", teacher_dirs)
    y = torch.zeros(B, T - 1, 2, 64, 64)
    y[1, 0, 0, 5, 5] = 60.0  # sample 1 moves 60 px somewhere: dropped
    assert flow.valid(y).tolist() == [True, False]
    pred = torch.zeros_like(y)
    mask = torch.ones(B, T, 2, 2, dtype=torch.bool)
    assert flow.loss(pred, y, mask).item() == 0.0  # only sample 0 (all zeros) counts
    single = flow.compute(torch.randn(B, 1, 3, 64, 64))
    assert single.shape == (B, 0, 2, 64, 64) and not flow.valid(single).any()
    head = flow.build_head(CFG)
    pred1 = flow.predict(head, torch.randn(B, 1, 4, CFG.hidden_size, requires_grad=True))
    loss = flow.loss(pred1, single, torch.ones(B, 1, 2, 2, dtype=torch.bool))
    assert loss.item() == 0.0 and loss.requires_grad


def test_flow_perceiver_rescales_to_frame_pixels(teacher_dirs: dict[str, str]) -> None:
    flow = make("flow", teacher_dirs)
    flow.setup("cpu")

    class Constant(nn.Module):  # a teacher predicting (u, v) = (4, 2) px at its 32x48 training size
        config = flow.teacher.config

        def forward(self, inputs: torch.Tensor) -> object:
            assert inputs.shape[1:] == (2, 27, 32, 48)
            logits = torch.tensor([4.0, 2.0]).expand(inputs.shape[0], 32, 48, 2)
            return type("Out", (), {"logits": logits})()

    first, second = torch.rand(3, 3, 64, 64), torch.rand(3, 3, 64, 64)
    out = perceiver_flow(Constant(), first, second)
    assert out.shape == (3, 2, 64, 64)
    assert torch.allclose(out[:, 0], torch.full((3, 64, 64), 4.0 * 64 / 48))
    assert torch.allclose(out[:, 1], torch.full((3, 64, 64), 2.0 * 64 / 32))


def test_raft_backend_needs_torchvision() -> None:
    flow = FlowTarget(backend="raft")
    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision installed: RAFT would download weights")
    with pytest.raises(ImportError, match="torchvision"):
        flow.setup("cpu")


def test_vq_accuracy_metric_and_code_count_check(teacher_dirs: dict[str, str]) -> None:
    vq = make("vq", teacher_dirs)
    y = vq.compute(_video())
    perfect = torch.nn.functional.one_hot(y, 16).float() * 10
    mask = _mask()
    assert vq.metrics(perfect, y, mask)["acc"].item() == 1.0
    assert vq.loss(perfect, y, mask).item() < 1e-3
    with pytest.raises(ValueError, match="16 codes"):
        TARGETS["vq"](model_name_or_path=teacher_dirs["vq"], num_codes=8192).setup("cpu")


def test_build_targets_weights_and_losses(teacher_dirs: dict[str, str]) -> None:
    targets = build_targets(
        {"sif": 1.0, "hog": 0.5, "vq": 2.0}, {n: OPTIONS[n](teacher_dirs) for n in ("sif", "vq")}
    )
    heads = targets.build_heads(CFG).eval()
    ys = targets.compute(_video())
    out = targets.losses(targets.predict(heads, _patches()), ys, _mask())
    expected = out["mvm_sif"] + 0.5 * out["mvm_hog"] + 2.0 * out["mvm_vq"]
    assert torch.allclose(out["loss"], expected) and "mvm_vq_acc" in out
    assert [s["name"] for s in targets.spec()] == ["sif", "hog", "vq"] and targets.spec()[1]["weight"] == 0.5
    assert isinstance(build_targets(["pixel", "hog"]), MVMTargets)
    with pytest.raises(ValueError, match="unknown MVM target"):
        build_targets(["sif", "dino"])
    with pytest.raises(ValueError, match="not in the spec"):
        build_targets(["hog"], {"sif": {}})


def test_teacher_load_error_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="nope"):
        TARGETS["sif"](model_name_or_path=str(tmp_path / "nope")).setup("cpu")


def test_mask_errors_are_clear() -> None:
    target = TARGETS["pixel"]()
    y = target.compute(_video())
    with pytest.raises(ValueError, match="bool"):
        target.loss(y, y, torch.zeros(B, T, 2, 2))


# ------------------------------------------------------------------------------ SIF teacher conversion


def test_sif_converter_round_trips_both_naming_schemes(teacher_dirs: dict[str, str]) -> None:
    model = transformers.SwinModel.from_pretrained(teacher_dirs["sif"], add_pooling_layer=False)
    sd = model.state_dict()
    v4 = sif_teacher_state_dict_from_release({f"feature_model.{k}": v for k, v in sd.items()}, scheme="v4")
    assert any(".attention.self.query.weight" in k for k in v4) and any(
        k.endswith("relative_position_index") for k in v4
    )
    assert not any(".q_proj." in k or ".mlp.fc" in k for k in v4)
    back = sif_teacher_state_dict_from_release({f"feature_model.{k}": v for k, v in v4.items()})
    if installed_swin_scheme() == "v5":
        assert set(back) == set(sd)
    model.load_state_dict(back, strict=True)
    with pytest.raises(KeyError, match="feature_model"):
        sif_teacher_state_dict_from_release({"enc_img.norm.weight": torch.ones(1)}, prefix="feature_model.")


def _load_rand_param():
    spec = importlib.util.spec_from_file_location("parity_make_state_dict", PARITY / "make_state_dict.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(
    not (PARITY / "violetv2_parity.safetensors").exists(), reason="parity fixture not present"
)
def test_sif_target_parity_with_the_release(tmp_path: Path) -> None:
    msd = _load_rand_param()
    release = {}
    for name, shape in msd.parse_tsv(str(PARITY / "violetv2_state_dict_keys.tsv")):
        if name.startswith("feature_model.") and not name.endswith(
            ("relative_position_index", "position_ids")
        ):
            release[name] = msd.rand_param(name, shape)
    assert len(release) == 447 - 24
    model = transformers.SwinModel(swin_base_in22k_config(), add_pooling_layer=False)
    model.load_state_dict(sif_teacher_state_dict_from_release(release), strict=True)
    model.save_pretrained(tmp_path / "swin")
    ref = load_file(str(PARITY / "violetv2_parity.safetensors"))
    target = TARGETS["sif"](model_name_or_path=str(tmp_path / "swin"))
    y = target.compute(ref["in.video"])
    assert y.shape == ref["x.sif_target"].shape == (2, 4, 49, 1024)
    assert (y - ref["x.sif_target"]).abs().max().item() < 1e-4


# ----------------------------------------------------------------------------------- teacher callback


class _TinyPretrain(L.LightningModule):
    """Stands in for the pre-training module: patch tokens from a linear video encoder, MVM heads."""

    def __init__(self, targets: MVMTargets) -> None:
        super().__init__()
        self.mvm_targets = targets  # plain attribute: never a submodule
        self.encoder = nn.Linear(3 * 32 * 32, CFG.hidden_size)
        self.mvm_heads = targets.build_heads(CFG)

    def training_step(self, batch: tuple[torch.Tensor], batch_idx: int) -> torch.Tensor:
        (video,) = batch
        assert all(not t.training for t in self.mvm_targets.teachers().values())
        ys = self.mvm_targets.compute(video)
        x = video.unfold(3, 32, 32).unfold(4, 32, 32)  # b t c gh gw 32 32
        patches = self.encoder(x.permute(0, 1, 3, 4, 2, 5, 6).flatten(4).flatten(2, 3))
        mask = torch.zeros(video.shape[0], video.shape[1], 2, 2, dtype=torch.bool)
        mask[:, :, 0] = True
        return self.mvm_targets.losses(self.mvm_targets.predict(self.mvm_heads, patches), ys, mask)["loss"]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=1e-3)


def test_callback_keeps_teachers_frozen_and_out_of_checkpoints(
    teacher_dirs: dict[str, str], tmp_path: Path
) -> None:
    targets = build_targets(["sif", "hog"], {"sif": OPTIONS["sif"](teacher_dirs)})
    module = _TinyPretrain(targets)
    data = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(_video().repeat(2, 1, 1, 1, 1)), batch_size=2
    )
    trainer = L.Trainer(
        max_steps=2, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[MVMTeacherCallback()], default_root_dir=tmp_path,
    )  # fmt: skip
    teacher_seen = {}

    class Probe(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
            teacher_seen["t"] = pl_module.mvm_targets["sif"].teacher
            teacher_seen["grad"] = [p.grad for p in teacher_seen["t"].parameters()]

    trainer.callbacks.append(Probe())
    trainer.fit(module, data)
    teacher = teacher_seen["t"]
    assert teacher is not None and not teacher.training
    assert all(g is None for g in teacher_seen["grad"])
    n_params = sum(1 for _ in module.parameters())
    assert sum(len(g["params"]) for g in trainer.optimizers[0].param_groups) == n_params
    teacher_ids = {id(p) for p in teacher.parameters()}
    assert not teacher_ids & {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    ckpt = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert set(ckpt["state_dict"]) == set(module.state_dict())
    assert not any("embeddings.patch_embeddings" in k or "layernorm_before" in k for k in ckpt["state_dict"])
    assert ckpt["mvm_targets"][0] == {"name": "sif", "model_name_or_path": teacher_dirs["sif"], "weight": 1.0}
    module.train()
    assert module.mvm_targets["sif"].teacher is None  # dropped at teardown, rebuilt lazily
    assert not module.mvm_targets["sif"].compute(_video()).requires_grad


def test_callback_rejects_a_module_without_targets() -> None:
    with pytest.raises(AttributeError, match="mvm_targets"):
        MVMTeacherCallback().setup(None, L.LightningModule(), "fit")  # type: ignore[arg-type]


def test_sif_on_frames_smaller_than_the_teacher(tmp_path) -> None:
    """64-px frames (the tiny preset) with a teacher whose 7x7 windows need 224 px: resized up, then pooled."""
    from transformers import SwinConfig, SwinModel

    cfg = SwinConfig(image_size=224, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=7)
    SwinModel(cfg, add_pooling_layer=False).save_pretrained(tmp_path)
    target = SIFTarget(str(tmp_path)).compute(torch.randn(1, 2, 3, 64, 64))
    assert target.shape == (1, 2, 4, 128) and torch.isfinite(target).all()
