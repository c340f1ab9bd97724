"""The ``violet`` command: a LightningCLI (fit / validate / test / predict) plus data and checkpoint tools.

    violet fit --config configs/pretrain/violetv2_base.yaml [--config configs/mvm/hog.yaml ...]
    violet fit --config configs/quickstart.yaml --print_config
    violet convert release.pth out.ckpt       # foreign checkpoint -> violetv2 checkpoint
    violet convert release.pth out/           # ... -> a from_pretrained directory (config.json + safetensors)
    violet export last.ckpt export/           # a task's Lightning checkpoint -> from_pretrained directory
    violet synth data/synthetic               # generate the synthetic benchmark
    violet shard --help                       # pack samples into webdataset shards

``--config`` files stack (the last one wins); ``--model`` and ``--data`` take any subclass of
:class:`~violetv2.VioletModule` / ``LightningDataModule`` (``class_path`` + ``init_args``).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from lightning.pytorch import Callback, LightningDataModule, Trainer
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.plugins.io import CheckpointIO

from .tasks.base import VioletModule

__all__ = ["VioletCLI", "main"]

TOOLS = {
    "convert": ("violetv2.convert.__main__", "foreign checkpoint -> violetv2 checkpoint or directory"),
    "export": ("violetv2.inference.export", "any task's .ckpt -> from_pretrained directory (Hub layout)"),
    "synth": ("violetv2.data.synthetic", "generate the synthetic video benchmark"),
    "shard": ("violetv2.data.shards", "pack annotation records + videos into streaming shards"),
}


class VioletCLI(LightningCLI):
    """LightningCLI with violetv2 defaults: subclass mode for model and data, configs saved next to logs."""

    def __init__(self, args: list[str] | None = None, run: bool = True) -> None:
        super().__init__(
            VioletModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            args=args,
            run=run,
            auto_configure_optimizers=False,
        )

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> Trainer:
        """Add the cluster defaults the config does not set itself: :class:`PreemptionCheckpoint` and
        :class:`NonFiniteGuard` callbacks (configure them by listing them under ``trainer.callbacks``), and
        :class:`AtomicCheckpointIO` as checkpoint plugin when ``trainer.plugins`` names none."""
        from .callbacks.preemption import PreemptionCheckpoint
        from .callbacks.safety import AtomicCheckpointIO, NonFiniteGuard

        given = config.get("callbacks") or []
        given = list(given) if isinstance(given, list) else [given]
        present = {type(c) for c in [*given, *callbacks]}
        config["callbacks"] = given + [
            cls() for cls in (PreemptionCheckpoint, NonFiniteGuard) if cls not in present
        ]
        plugins = config.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, list) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())
        config["plugins"] = plugins
        return super()._instantiate_trainer(config, callbacks)


def _tool_help() -> str:
    lines = ["", "violetv2 tools (each has its own --help):"]
    lines += [f"  violet {name:<8} {desc}" for name, (_, desc) in TOOLS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int | None:
    """Entry point of the ``violet`` console script."""
    from_sys = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in TOOLS:
        module = importlib.import_module(TOOLS[argv[0]][0])
        result = module.main(argv[1:])
        return result if isinstance(result, int) else 0
    if argv in ([], ["-h"], ["--help"]):
        try:
            VioletCLI(args=argv or ["--help"], run=True)
        except SystemExit:
            print(_tool_help())
            raise
    VioletCLI(args=None if from_sys else argv)
    return None


if __name__ == "__main__":
    sys.exit(main())
