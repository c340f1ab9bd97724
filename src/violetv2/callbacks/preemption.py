"""Pre-emption: on SIGTERM or SLURM's SIGUSR1, finish the current step, write a checkpoint, exit cleanly.

What Lightning 2.6 does by itself: outside SLURM, SIGTERM only sets ``trainer.received_sigterm`` and the loops
raise ``SIGTERMException`` (a ``SystemExit``) at the end of the current batch (or in the middle of validation),
**without saving anything**; under SLURM with ``SLURMEnvironment(auto_requeue=True)`` a SIGUSR1 handler saves an
``hpc_ckpt_*.ckpt`` from inside the signal handler, i.e. at an arbitrary point of a step, and SIGTERM is
ignored. :class:`PreemptionCheckpoint` replaces both handlers while training runs: the handler only records the
signal; at the end of the current training batch every rank agrees (one all-reduce when distributed), the
checkpoint is written exactly like a mid-epoch ``ModelCheckpoint`` one (loop progress, optimiser, scheduler and
the train loader's position: ``violet fit ... --ckpt_path last`` continues at the same global step with the same
data order), the SLURM job is requeued (SIGUSR1 under SLURM), and the run exits with status 0.

A signal during validation is acted upon after validation, at the end of the next training batch.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint, OnExceptionCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

__all__ = ["PreemptionCheckpoint", "restore_train_loader_state"]

log = logging.getLogger(__name__)


class PreemptionCheckpoint(OnExceptionCheckpoint):
    """Checkpoint and exit at the end of the current step when a pre-emption signal arrives.

    Args:
        dirpath: Folder of the checkpoint (default: the first ``ModelCheckpoint``'s ``dirpath``, else
            ``<default_root_dir>/checkpoints``).
        filename: File name without ``.ckpt``. The default ``last`` lets ``--ckpt_path last`` find it through
            ``ModelCheckpoint`` as well as through this callback.
        signals: Signal names to handle.
        requeue: Under SLURM (``SLURM_JOB_ID`` set), requeue the job (``scontrol requeue``) after saving on
            SIGUSR1, so the job restarts and resumes.
        check_every_n_steps: How often the ranks agree on whether a signal arrived (1: every step).
    """

    def __init__(
        self,
        dirpath: str | None = None,
        filename: str = "last",
        signals: list[str] | None = None,
        requeue: bool = True,
        check_every_n_steps: int = 1,
    ) -> None:
        super().__init__(dirpath or "", filename)
        names = signals if signals is not None else ["SIGTERM", "SIGUSR1"]
        unknown = [n for n in names if not isinstance(getattr(signal, n, None), signal.Signals)]
        if unknown:
            raise ValueError(f"PreemptionCheckpoint: unknown signal names {unknown}")
        if check_every_n_steps < 1:
            raise ValueError(f"check_every_n_steps must be >= 1, got {check_every_n_steps}")
        self.signals = [getattr(signal, n) for n in names]
        self.requeue, self.check_every_n_steps = requeue, check_every_n_steps
        self.received: int | None = None
        self.saved_path: str | None = None
        self._previous: dict[int, Any] = {}

    @property
    def ckpt_path(self) -> str | None:  # type: ignore[override]
        """The checkpoint file, once the folder is known (``--ckpt_path last`` considers it)."""
        return os.path.join(self.dirpath, self.filename + self.FILE_EXTENSION) if self.dirpath else None

    # ------------------------------------------------------------------ signals
    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum  # only record: saving happens at the end of the step

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        restore_train_loader_state(trainer)
        if not self.dirpath:
            self.dirpath = _default_dir(trainer)
        if threading.current_thread() is not threading.main_thread():
            log.warning("PreemptionCheckpoint: not in the main thread, signal handlers not installed")
            return
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._handler)

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            if handler is not None:
                signal.signal(signum, handler)
        self._previous = {}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    # ------------------------------------------------------------------ acting
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        stop = self.received is not None
        if trainer.world_size > 1:  # every rank takes part in the same collectives: decide on the step alone
            if trainer.global_step % self.check_every_n_steps:
                return
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if not stop:
            return
        name = signal.Signals(self.received).name if self.received is not None else "a signal on another rank"
        path = self.ckpt_path
        assert path is not None
        trainer.save_checkpoint(path)
        self.saved_path = path
        log.warning("pre-empted by %s: saved %s at global step %d; exiting", name, path, trainer.global_step)
        if trainer.is_global_zero:
            print(f"violetv2: pre-empted by {name}; checkpoint {path} (global step {trainer.global_step})")
        if self.requeue and self.received == signal.SIGUSR1 and trainer.is_global_zero:
            _slurm_requeue()
        raise SIGTERMException  # a SystemExit: Lightning tears down and the process exits with status 0

    def on_exception(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        self._restore()  # the checkpoint was written before raising; other exceptions write nothing here

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore()  # unlike OnExceptionCheckpoint, keep the file: it is the run's newest state

    def state_dict(self) -> dict[str, Any]:
        return {}


def restore_train_loader_state(trainer: L.Trainer) -> None:
    """Hand the checkpoint's train-loader position to the loader, if Lightning has not.

    Lightning 2.6 builds the train loader early when ``configure_optimizers`` asks for
    ``trainer.estimated_stepping_batches`` (as :class:`~violetv2.VioletModule` does for its schedule), before
    the checkpoint's loop state is restored; the fit loop then never loads the saved loader state and a
    mid-epoch resume silently restarts the epoch's data. Called at ``on_train_start`` (before the first batch
    is drawn), this loads the pending state; it does nothing when Lightning already did or nothing is pending.
    """
    fit_loop = trainer.fit_loop
    pending = getattr(fit_loop, "_combined_loader_states_to_load", None)
    if pending and getattr(fit_loop, "_combined_loader", None) is not None and fit_loop.restarting:
        fit_loop._load_combined_loader_states()


def _default_dir(trainer: L.Trainer) -> str:
    for callback in trainer.callbacks:  # type: ignore[attr-defined]
        if isinstance(callback, ModelCheckpoint) and callback.dirpath:
            return str(callback.dirpath)
    return str(Path(trainer.default_root_dir) / "checkpoints")


def _slurm_requeue() -> None:
    job = os.environ.get("SLURM_JOB_ID")
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    if not job:
        return
    result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, check=False)
    if result.returncode:
        log.warning("scontrol requeue %s failed (%d): %s", job, result.returncode, result.stderr.strip())
    else:
        log.warning("requeued SLURM job %s", job)
