"""The ``violet`` command: a LightningCLI (fit / validate / test / predict) plus data and checkpoint tools.

    violet fit --config configs/pretrain/violetv2_base.yaml [--config configs/mvm/hog.yaml ...]
    violet fit --config configs/quickstart.yaml --print_config
    violet convert release.pth out.ckpt       # foreign checkpoint -> violetv2 checkpoint
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

# Read once, when torch loads OpenMP (so before the imports below): threads waiting for work sleep instead of
# spinning. Measured on 2 cores shared with other jobs (load 5-7), one quickstart training step: 2 spinning threads
# 8.9 s, 2 sleeping threads 3.6-3.7 s, 1 thread 2.2-3.3 s (README, "What `make demo` does"). A value the user set
# wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from lightning.pytorch import LightningDataModule  # noqa: E402
from lightning.pytorch.cli import LightningCLI  # noqa: E402

from .tasks.base import VioletModule  # noqa: E402

__all__ = ["VioletCLI", "busy_cores", "main", "training_threads"]

TOOLS = {
    "convert": ("violetv2.convert.__main__", "foreign checkpoint -> violetv2 checkpoint"),
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

    def before_instantiate_classes(self) -> None:
        if self.subcommand not in ("fit", "validate", "test", "predict"):
            return
        data = self.config[self.subcommand].get("data") or {}
        workers = (data.get("init_args") or {}).get("num_workers", 0) or 0
        threads = set_training_threads(int(workers))
        if threads is not None:
            print(f"violetv2: {threads} training thread(s) on {usable_cores()} cores ({workers} data workers; "
                  "set VIOLET_NUM_THREADS to choose)", file=sys.stderr, flush=True)  # fmt: skip


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


def training_threads(cores: int, busy: float, num_workers: int) -> int:
    """Intra-op threads for the training process: the cores left by other jobs, at least one.

    DataLoader workers run one intra-op thread each (PyTorch sets it) and are idle most of the time when
    decoding is faster than training (the quickstart: data time under 10 ms a step), so they are not given
    whole cores on small machines; from 4 cores up, every two workers keep one core for themselves.

    Args:
        cores: Cores this process may use.
        busy: Cores kept busy by other processes (:func:`busy_cores`).
        num_workers: DataLoader worker processes of the run.
    """
    reserved = num_workers // 2 if cores >= 4 else 0
    return max(1, min(cores - reserved, round(cores - busy)))


def set_training_threads(num_workers: int) -> int | None:
    """Set torch's intra-op threads for a ``fit`` (:func:`training_threads`); ``None`` (nothing changed) when the
    user chose a thread count with ``OMP_NUM_THREADS`` or ``VIOLET_NUM_THREADS``, which is used instead."""
    chosen = os.environ.get("VIOLET_NUM_THREADS")
    if chosen:
        torch.set_num_threads(int(chosen))
        return None
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    threads = training_threads(usable_cores(), busy_cores(), num_workers)
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
