"""Construction needs no network: head widths of the known teachers come from a local table, teacher weights
load only in the callback's ``setup`` (first process of the node first, then the others after a barrier)."""

from __future__ import annotations

from types import SimpleNamespace

import lightning as L
import pytest
import torch

from violetv2 import VioletModule
from violetv2.callbacks.teachers import MVMTeacherCallback
from violetv2.mvm.targets import MVMTargets, PixelTarget, SIFTarget
from violetv2.mvm.teachers import TEACHER_WIDTHS, teacher_width
from violetv2.tasks.pretrain import PretrainModule

transformers = pytest.importorskip("transformers")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """HF_HUB_OFFLINE=1 and every from_pretrained / hub download raising: returns the names of those called."""
    calls: list[str] = []
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(name: str):  # noqa: ANN202
        def raise_(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            calls.append(name)
            raise AssertionError(f"{name} called during construction")

        return raise_

    for cls in (transformers.PreTrainedConfig, transformers.AutoConfig, transformers.PreTrainedModel):
        monkeypatch.setattr(cls, "from_pretrained", classmethod(refuse(f"{cls.__name__}.from_pretrained")))
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse("hf_hub_download"))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse("snapshot_download"))
    return calls


def test_the_guard_catches_a_call(offline: list[str]) -> None:
    with pytest.raises(AssertionError, match="called during construction"):
        transformers.SwinConfig.from_pretrained("microsoft/swin-base-patch4-window7-224-in22k")
    assert offline == ["PreTrainedConfig.from_pretrained"]


def test_default_module_builds_offline(offline: list[str]) -> None:
    module = PretrainModule()  # default target: SIF with the Swin-B teacher
    assert _out_width(module.model.mvm_heads["sif"]) == 1024
    both = PretrainModule(mvm_targets={"sif": 1.0, "clip": 1.0})
    assert _out_width(both.model.mvm_heads["clip"]) == 768 and _out_width(both.model.mvm_heads["sif"]) == 1024
    assert module.mvm_targets["sif"].teacher is None and offline == []


def _out_width(head: torch.nn.Module) -> int:
    """Width of the head's output (the last Linear)."""
    return [m for m in head.modules() if isinstance(m, torch.nn.Linear)][-1].out_features


def test_sif_checkpoint_loads_offline(offline: list[str], tmp_path) -> None:
    module = PretrainModule(mvm_targets={"sif": 1.0})
    checkpoint = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "pytorch-lightning_version": L.__version__,
        "violetv2": {"class_path": "violetv2.tasks.pretrain.PretrainModule"},
    }
    torch.save(checkpoint, tmp_path / "sif.ckpt")
    restored = VioletModule.load_from_checkpoint(tmp_path / "sif.ckpt")
    assert type(restored) is PretrainModule and restored.mvm_targets["sif"].teacher is None
    for key, value in module.state_dict().items():
        assert torch.equal(value, restored.state_dict()[key]), key
    assert offline == []


def test_widths_from_the_table_a_local_config_or_a_clear_error(tmp_path) -> None:
    assert TEACHER_WIDTHS["microsoft/swin-base-patch4-window7-224-in22k"] == 1024
    assert TEACHER_WIDTHS["openai/clip-vit-base-patch32"] == 768
    transformers.SwinConfig(embed_dim=8, depths=[1, 1, 1]).save_pretrained(tmp_path / "swin")
    assert teacher_width(str(tmp_path / "swin"), "swin") == 32
    transformers.CLIPConfig(vision_config={"hidden_size": 48}).save_pretrained(tmp_path / "clip")
    assert teacher_width(str(tmp_path / "clip"), "clip") == 48
    with pytest.raises(ValueError, match="someone/unknown-swin.*feature_dim"):
        SIFTarget("someone/unknown-swin").build_head(PretrainModule().cfg)
    assert (
        _out_width(SIFTarget("someone/unknown-swin", feature_dim=12).build_head(PretrainModule().cfg)) == 12
    )


# ------------------------------------------------------------------ teachers load in setup, rank by rank


class _Loading(PixelTarget):
    """A target that records when its teacher is loaded."""

    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events

    def setup(self, device: torch.device | str = "cpu") -> None:
        self.events.append("load")


@pytest.mark.parametrize(("local_rank", "expected"), [(0, ["load", "barrier"]), (1, ["barrier", "load"])])
def test_callback_loads_on_local_rank_0_first(local_rank: int, expected: list[str]) -> None:
    events: list[str] = []
    module = L.LightningModule()
    module.mvm_targets = MVMTargets([_Loading(events)])
    strategy = SimpleNamespace(barrier=lambda name=None: events.append("barrier"))
    trainer = SimpleNamespace(local_rank=local_rank, world_size=2, strategy=strategy)
    MVMTeacherCallback().setup(trainer, module, "fit")  # type: ignore[arg-type]
    assert events == expected
    events.clear()
    single = SimpleNamespace(local_rank=0, world_size=1, strategy=strategy)
    MVMTeacherCallback().setup(single, module, "fit")  # type: ignore[arg-type]
    assert events == ["load"]  # one process: no barrier
