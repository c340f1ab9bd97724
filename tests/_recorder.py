"""A callback for subprocess tests: appends every training batch's global step, epoch and sample ids to a file."""

from __future__ import annotations

import json
import time
from typing import Any

import lightning as L


class SampleRecorder(L.Callback):
    """Write ``{"step", "epoch", "ids"}`` per training batch (at its start) to ``path``, one JSON line each.

    Args:
        path: Output file (appended to, flushed per line).
        delay: Seconds to sleep per batch, so a test can signal the process mid-epoch.
    """

    def __init__(self, path: str, delay: float = 0.0) -> None:
        self.path, self.delay = path, delay

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        line = {"step": trainer.global_step, "epoch": trainer.current_epoch, "ids": list(batch.sample_ids)}
        with open(self.path, "a") as f:
            f.write(json.dumps(line) + "\n")
        time.sleep(self.delay)
