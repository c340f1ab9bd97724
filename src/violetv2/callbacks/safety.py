"""Training safety: skip steps whose loss or gradients are not finite, and write checkpoints atomically.

:class:`NonFiniteGuard` (a callback) inspects the gradients right before every optimiser step. When any is NaN
or infinite (a NaN / inf loss always gives such gradients; under DDP they are already all-reduced, so every rank
takes the same decision without an extra collective) it drops them, so the optimiser updates nothing: weights,
moments and step counters stay exactly as before the batch. The step is counted in ``train/nonfinite_steps``,
logged with the batch's sample ids, and after ``max_consecutive`` such steps in a row training stops with a
:class:`NonFiniteLossError` naming the step and the samples.

:class:`AtomicCheckpointIO` (a checkpoint plugin, made the default by ``violet``) writes each checkpoint to a
temporary file in the target directory and renames it over the target (``os.replace``), so a crash or a
pre-emption while saving leaves the previous ``last.ckpt`` intact instead of a truncated one.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import Tensor

__all__ = ["AtomicCheckpointIO", "NonFiniteGuard", "NonFiniteLossError"]

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Training produced non-finite gradients in too many consecutive steps."""


class NonFiniteGuard(L.Callback):
    """Skip optimiser steps with non-finite gradients, count them, stop after too many in a row.

    With ``16-mixed`` precision the GradScaler skips overflowing steps itself while it calibrates its scale
    (usually a few in a row at the start); they are counted here too, so keep ``max_consecutive`` above that.

    Args:
        max_consecutive: Stop (raise :class:`NonFiniteLossError`) after this many skipped steps in a row;
            0 never stops.
    """

    def __init__(self, max_consecutive: int = 10) -> None:
        if max_consecutive < 0:
            raise ValueError(f"max_consecutive must be >= 0, got {max_consecutive}")
        self.max_consecutive = max_consecutive
        self.total = 0
        self.consecutive = 0
        self._batch: Any = None

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._batch = batch

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        finite = _all_finite(grads)
        if finite:
            self.consecutive = 0
        else:
            self._skip(trainer, optimizer)
        pl_module.log("train/nonfinite_steps", float(self.total), on_step=True, batch_size=1)

    def _skip(self, trainer: L.Trainer, optimizer: torch.optim.Optimizer) -> None:
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = None  # optimisers leave parameters without a gradient (and their state) untouched
        self.total += 1
        self.consecutive += 1
        where = f"global step {trainer.global_step}{_describe_batch(self._batch)}"
        log.warning(
            "non-finite gradients at %s: step skipped (%d in a row, %d in total)",
            where,
            self.consecutive,
            self.total,
        )
        if self.max_consecutive and self.consecutive >= self.max_consecutive:
            raise NonFiniteLossError(
                f"{self.consecutive} consecutive training steps had a non-finite loss or gradients (last at {where}); "
                "stopping. Lower the learning rate, check the inputs, or raise NonFiniteGuard.max_consecutive."
            )

    def state_dict(self) -> dict[str, Any]:
        return {"total": self.total, "consecutive": self.consecutive}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.total, self.consecutive = int(state_dict["total"]), int(state_dict["consecutive"])


def _all_finite(grads: list[Tensor]) -> bool:
    """One host sync: are all gradient entries finite?"""
    if not grads:
        return True
    norms = torch._foreach_norm(grads, 2.0)  # inf / nan propagate into the norms
    return bool(torch.isfinite(torch.stack([n.float() for n in norms])).all())


def _describe_batch(batch: Any) -> str:
    """``" (samples [...]; input video has N non-finite values)"`` for a VideoTextBatch, else ``""``."""
    ids = getattr(batch, "sample_ids", None)
    if ids is None:
        return ""
    text = f" (samples {list(ids)[:8]}{' ...' if len(ids) > 8 else ''}"
    video = getattr(batch, "video", None)
    if isinstance(video, Tensor) and video.is_floating_point():
        bad = int((~torch.isfinite(video)).sum())
        text += f"; input video has {bad} non-finite values" if bad else "; input video is finite"
    return text + ")"


class AtomicCheckpointIO(TorchCheckpointIO):
    """:class:`~lightning.pytorch.plugins.io.TorchCheckpointIO` that never leaves a half-written file.

    Local paths: the checkpoint goes to a temporary file in the same directory, is flushed to disk, then
    replaces the target in one ``os.replace``. Remote paths (``s3://``, ...) fall back to Lightning's writer.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options, got {storage_options!r}")
        fs = get_filesystem(path)
        if "file" not in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
            return super().save_checkpoint(checkpoint, path)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
