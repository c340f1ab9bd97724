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
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningDataModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import CheckpointIO

from .callbacks import predictions
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
        """Add the defaults the config does not set itself: the :class:`PreemptionCheckpoint`,
        :class:`NonFiniteGuard` and :class:`~violetv2.callbacks.predictions.DataModelCheck` callbacks (plus the
        :class:`~violetv2.callbacks.predictions.JsonlPredictionWriter` for ``violet predict``; configure any of
        them by listing it under ``trainer.callbacks``), and :class:`AtomicCheckpointIO` as checkpoint plugin
        when ``trainer.plugins`` names none."""
        from .callbacks.preemption import PreemptionCheckpoint
        from .callbacks.safety import AtomicCheckpointIO, NonFiniteGuard

        given = config.get("callbacks") or []
        given = list(given) if isinstance(given, list) else [given]
        present = {type(c) for c in [*given, *callbacks]}
        defaults = [PreemptionCheckpoint, NonFiniteGuard, predictions.DataModelCheck]
        if self.subcommand == "predict":
            defaults.append(predictions.JsonlPredictionWriter)
        config["callbacks"] = given + [cls() for cls in defaults if cls not in present]
        plugins = config.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, list) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())
        config["plugins"] = plugins
        return super()._instantiate_trainer(config, callbacks)

    # ------------------------------------------------------------------ data <-> model
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Links keeping data and model consistent, and ``init_checkpoint_if_exists``.

        Linked at instantiation (computed from the DataModule object, so DataModules without the attribute
        -- pre-training -- give ``None``, the model's default): the data's tokenizer -> ``model.tokenizer``,
        the classifier answer-vocabulary size -> ``model.num_answers``. Vocabulary size,
        frames, frame size and text length are checked against the model config before the first step
        (:class:`~violetv2.callbacks.predictions.DataModelCheck`).
        """
        parser.add_argument(
            "--init_checkpoint_if_exists",
            type=str | None,
            default=None,
            help="Start from this checkpoint when the file exists, from scratch otherwise (quickstart "
            "configs); an explicit --model.init_args.init_checkpoint wins and must exist.",
        )
        links = {
            "tokenizer": predictions.data_tokenizer,
            "num_answers": predictions.data_num_answers,
        }  # targets every VioletModule task accepts (a link to a missing argument breaks --ckpt_path)
        for target, compute in links.items():
            parser.link_arguments("data", f"model.init_args.{target}", compute, apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        cfg = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        optional = cfg.get("init_checkpoint_if_exists")
        model_args = cfg["model"].get("init_args")
        if optional and model_args is not None and model_args.get("init_checkpoint") is None:
            if Path(optional).is_file():
                model_args["init_checkpoint"] = optional
            else:
                print(f"violet: {optional} does not exist: the model starts from scratch", file=sys.stderr)


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
