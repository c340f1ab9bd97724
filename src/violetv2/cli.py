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
import os
import sys
import time
from pathlib import Path
from typing import Any

# Read once, when torch loads OpenMP (so before the imports below): threads waiting for work sleep instead of
# spinning. Measured on 2 cores shared with other jobs (load 5-7), one quickstart training step: 2 spinning threads
# 8.9 s, 2 sleeping threads 3.6-3.7 s, 1 thread 2.2-3.3 s (README, "What `make demo` does"). A value the user set
# wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from lightning.pytorch import Callback, LightningDataModule, Trainer  # noqa: E402
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI  # noqa: E402
from lightning.pytorch.plugins.io import CheckpointIO  # noqa: E402

from .callbacks import predictions  # noqa: E402
from .tasks.base import VioletModule  # noqa: E402

__all__ = ["VioletCLI", "busy_cores", "main", "training_threads"]

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
        self._set_threads()
        cfg = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        optional = cfg.get("init_checkpoint_if_exists")
        model_args = cfg["model"].get("init_args")
        if optional and model_args is not None and model_args.get("init_checkpoint") is None:
            if Path(optional).is_file():
                model_args["init_checkpoint"] = optional
            else:
                print(f"violet: {optional} does not exist: the model starts from scratch", file=sys.stderr)

    def _set_threads(self) -> None:
        if self.subcommand not in ("fit", "validate", "test", "predict"):
            return
        data = self.config[self.subcommand].get("data") or {}
        workers = (data.get("init_args") or {}).get("num_workers", 0) or 0
        threads = set_training_threads(int(workers))
        if threads is None:
            return
        note = f"violetv2: {threads} training thread(s) on {usable_cores()} cores ({workers} data workers)"
        busy = busy_cores() if threads > 1 else 0.0
        if busy >= 0.75:
            note += (f"; other processes keep {busy:.1f} cores busy: VIOLET_NUM_THREADS=1 may run faster here, "
                     "and changes float rounding, so give it to every run you compare")  # fmt: skip
        else:
            note += "; set VIOLET_NUM_THREADS to choose"
        print(note, file=sys.stderr, flush=True)


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else ``os.cpu_count()``)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def busy_cores(seconds: float = 0.5) -> float:
    """Cores kept busy by other processes, from two reads of ``/proc/stat`` ``seconds`` apart (0 where there
    is no ``/proc/stat``). Nothing of this process runs in between, so all of it is other work."""

    def read() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    try:
        total0, idle0 = read()
        time.sleep(seconds)
        total1, idle1 = read()
    except (OSError, ValueError, IndexError):
        return 0.0
    total = total1 - total0
    return 0.0 if total <= 0 else (os.cpu_count() or 1) * (1.0 - (idle1 - idle0) / total)


def training_threads(cores: int, num_workers: int) -> int:
    """Intra-op threads for the training process, from the machine's cores and the run's workers, never its load
    (the thread count changes float summation order, so a count chosen from the load made the same run give
    different numbers).

    DataLoader workers run one intra-op thread each (PyTorch sets it) and are idle most of the time when
    decoding is faster than training (the quickstart: data time under 10 ms a step), so they are not given
    whole cores on small machines; from 4 cores up, every two workers keep one core for themselves.

    Args:
        cores: Cores this process may use.
        num_workers: DataLoader worker processes of the run.
    """
    reserved = num_workers // 2 if cores >= 4 else 0
    return max(1, cores - reserved)


def set_training_threads(num_workers: int) -> int | None:
    """Set torch's intra-op threads for a ``fit`` (:func:`training_threads`); ``None`` (nothing changed) when the
    user chose a thread count with ``OMP_NUM_THREADS`` or ``VIOLET_NUM_THREADS``, which is used instead."""
    chosen = os.environ.get("VIOLET_NUM_THREADS")
    if chosen:
        torch.set_num_threads(int(chosen))
        return None
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    threads = training_threads(usable_cores(), num_workers)
    torch.set_num_threads(threads)
    return threads


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
