"""Lifecycle of the frozen MVM teachers during training: build, place, keep frozen, keep out of checkpoints.

The LightningModule owns an :class:`~violetv2.mvm.targets.MVMTargets` as a plain attribute (default name
``mvm_targets``; a plain object, so its teachers are not submodules) and calls
``self.mvm_targets.compute(batch.video)`` in its steps. This callback only manages the teachers:

- ``setup``: loads every teacher (``from_pretrained``) before the first batch, so a bad path fails early: the
  first process of each node first (it fills the Hugging Face cache), then, after a barrier, the others;
  nothing is loaded or downloaded when the module is built (head widths come from a local table);
- ``on_fit_start`` / ``on_*_start`` / every batch start: moves them to the module's device and back to
  ``eval()`` (``pl_module.train()`` never reaches them, but a user might call ``.train()`` on one);
- ``on_save_checkpoint``: records ``checkpoint["mvm_targets"]`` (names, options, weights: no tensors) and
  fails loudly if a teacher tensor somehow made it into the state dict;
- ``teardown``: drops the teachers.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from torch import nn

from violetv2.mvm.targets import MVMTargets

__all__ = ["MVMTeacherCallback"]


class MVMTeacherCallback(L.Callback):
    """Builds the MVM teachers in ``setup`` and keeps them frozen, on device, and out of checkpoints.

    Args:
        attr: Name of the module attribute holding the :class:`MVMTargets`.
    """

    def __init__(self, attr: str = "mvm_targets") -> None:
        super().__init__()
        self.attr = attr

    def targets(self, pl_module: L.LightningModule) -> MVMTargets:
        """The module's targets container (checked)."""
        targets = getattr(pl_module, self.attr, None)
        if not isinstance(targets, MVMTargets):
            raise AttributeError(
                f"MVMTeacherCallback: {type(pl_module).__name__}.{self.attr} must be an MVMTargets "
                f"(got {type(targets).__name__}); set it in __init__ with violetv2.mvm.targets.build_targets"
            )
        return targets

    def _place(self, pl_module: L.LightningModule) -> None:
        targets = self.targets(pl_module)
        for name, teacher in targets.teachers().items():
            if _device(teacher) != pl_module.device:
                targets[name].setup(pl_module.device)
            if teacher.training:
                teacher.eval()

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        targets = self.targets(pl_module)
        first = trainer.local_rank == 0
        if first:
            targets.setup(pl_module.device)
        if trainer.world_size > 1:
            trainer.strategy.barrier("mvm_teachers_loaded_on_local_rank_0")
        if not first:
            targets.setup(pl_module.device)
        self._check_not_registered(pl_module)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._place(pl_module)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._place(pl_module)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._place(pl_module)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._place(pl_module)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        targets = self.targets(pl_module)
        checkpoint["mvm_targets"] = targets.spec()
        owned = {p.data_ptr() for t in targets.teachers().values() for p in t.state_dict().values()}
        leaked = [k for k, v in checkpoint.get("state_dict", {}).items() if v.data_ptr() in owned]
        if leaked:
            raise RuntimeError(f"teacher tensors found in the checkpoint state_dict: {leaked[:5]}")

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.targets(pl_module).teardown()

    def _check_not_registered(self, pl_module: L.LightningModule) -> None:
        teacher_ids = {id(t) for t in self.targets(pl_module).teachers().values()}
        registered = [n for n, m in pl_module.named_modules() if id(m) in teacher_ids]
        if registered:
            raise RuntimeError(f"MVM teachers must not be submodules of the LightningModule: {registered}")


def _device(module: nn.Module):  # noqa: ANN202
    return next(module.parameters()).device
