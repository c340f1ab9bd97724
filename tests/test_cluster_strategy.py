"""Every configs/strategy overlay builds its Trainer on CPU where the strategy allows it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy

from violetv2.cli import VioletCLI

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI.s args parameter")

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = sorted((ROOT / "configs" / "strategy").glob("*.yaml"))
MODEL = ["--model=violetv2.tasks.pretrain.PretrainModule", "--model.mvm_targets={pixel: 1.0}"]
DATA = ["--data=violetv2.data.datamodules.PretrainDataModule"]


def test_the_overlays_exist() -> None:
    assert {p.stem for p in STRATEGIES} >= {"ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"}


@pytest.mark.parametrize("path", STRATEGIES, ids=lambda p: p.stem)
def test_overlay_builds_its_trainer_on_cpu(path: Path, tmp_path: Path) -> None:
    if path.stem.startswith("deepspeed") and importlib.util.find_spec("deepspeed") is None:
        pytest.skip("deepspeed is not installed")
    cpu = ["--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.logger=false"]
    args = ["--config", str(path), *cpu, f"--trainer.default_root_dir={tmp_path}", *MODEL, *DATA]
    if path.stem == "fsdp":  # Lightning builds FSDP only on GPUs: check the refusal, then the strategy itself
        with pytest.raises(ValueError, match="strategy `fsdp` requires a GPU accelerator"):
            VioletCLI(args=args, run=False)
        strategy = _strategy_from(path)
        assert isinstance(strategy, FSDPStrategy)
        from violetv2.models.fusion import FusionLayer
        from violetv2.models.video_swin import SwinBlock3D

        assert set(strategy.kwargs["auto_wrap_policy"]._module_classes) == {SwinBlock3D, FusionLayer}
        assert strategy.sharding_strategy.name == "SHARD_GRAD_OP" and strategy._state_dict_type == "full"
        return
    strategy = VioletCLI(args=args, run=False).trainer.strategy
    if path.stem == "ddp":
        assert isinstance(strategy, DDPStrategy) and strategy._ddp_kwargs["find_unused_parameters"] is False
    else:
        assert type(strategy).__name__ == "DeepSpeedStrategy"
    assert len(strategy.parallel_devices) == 2


def _strategy_from(path: Path):
    """The overlay's ``trainer.strategy``, instantiated from its YAML as LightningCLI would."""
    import yaml
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_argument("--strategy", type=FSDPStrategy)
    config = parser.parse_object({"strategy": yaml.safe_load(path.read_text())["trainer"]["strategy"]})
    return parser.instantiate_classes(config).strategy
