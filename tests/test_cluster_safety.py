"""Training safety in one process: non-finite steps skipped and counted, atomic checkpoints, pre-emption by a
signal mid-epoch (checkpoint, clean exit, exact resume), and the CLI's defaults."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from violetv2.callbacks.preemption import PreemptionCheckpoint
from violetv2.callbacks.safety import AtomicCheckpointIO, NonFiniteGuard, NonFiniteLossError
from violetv2.data.batch import VideoTextBatch
from violetv2.data.datamodules import PretrainDataModule, Source
from violetv2.data.synthetic import generate

DATA = {"batch_size": 2, "num_frames": 2, "image_size": 32, "max_text_len": 16, "num_workers": 0}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("synthetic")
    generate(path, num_train=10, num_test=4, size=32, seconds=1.0, workers=0)
    return path


def datamodule(root: Path) -> PretrainDataModule:
    files = Source("webvid_csv", str(root / "webvid/results_train.csv"), str(root / "videos"))
    files.options = {"video_layout": "flat"}
    return PretrainDataModule(train=[files], tokenizer=str(root / "tokenizer"), pin_memory=False, **DATA)


class Tiny(L.LightningModule):
    """A linear model on the clip mean; ``nan_steps`` makes those global steps' loss NaN."""

    def __init__(self, nan_steps: tuple[int, ...] = (), signal_at: int | None = None) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)
        self.nan_steps, self.signal_at = set(nan_steps), signal_at
        self.seen: list[tuple[int, list[str]]] = []

    def training_step(self, batch: VideoTextBatch, batch_idx: int) -> torch.Tensor:
        self.seen.append((self.global_step, list(batch.sample_ids)))
        if self.global_step == self.signal_at:
            os.kill(os.getpid(), signal.SIGUSR1)
        loss = self.layer(batch.video.mean(dim=(1, 3, 4))).pow(2).mean()
        return loss * float("nan") if self.global_step in self.nan_steps else loss

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=0.1)
        total = self.trainer.estimated_stepping_batches  # what VioletModule does (triggers the early loader)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / (total + 1))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def trainer(tmp_path: Path, callbacks: list, **kw) -> L.Trainer:
    args = {"max_epochs": 2, "accelerator": "cpu", "logger": False, "enable_progress_bar": False}
    args |= {"enable_model_summary": False, "num_sanity_val_steps": 0, "limit_val_batches": 0}
    return L.Trainer(default_root_dir=tmp_path, callbacks=callbacks, **{**args, **kw})


# ---------------------------------------------------------------------------------------------- non-finite


def test_nonfinite_steps_are_skipped_without_touching_weights_or_optimizer(
    root: Path, tmp_path: Path
) -> None:
    guard = NonFiniteGuard(max_consecutive=3)
    model = Tiny(nan_steps=(2, 3))
    snapshots: dict[int, dict] = {}

    class Snap(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            opt = trainer.optimizers[0]
            state = {k: {n: v.clone() for n, v in s.items()} for k, s in opt.state.items()}
            snapshots[trainer.global_step] = {"w": pl_module.layer.weight.detach().clone(), "opt": state}

    trainer(tmp_path, [guard, Snap()], max_epochs=1).fit(model, datamodule=datamodule(root))
    assert guard.total == 2 and guard.consecutive == 0  # step 4 was finite again
    # the skipped steps 2 and 3 left weights and AdamW moments (and step counts) as they were
    for skipped in (2, 3):
        assert torch.equal(snapshots[skipped]["w"], snapshots[skipped + 1]["w"])
        for key, state in snapshots[skipped]["opt"].items():
            for name, value in state.items():
                assert torch.equal(value, snapshots[skipped + 1]["opt"][key][name])
    assert not torch.equal(snapshots[1]["w"], snapshots[2]["w"])  # a finite step does update


def test_too_many_nonfinite_steps_in_a_row_stop_with_a_clear_message(root: Path, tmp_path: Path) -> None:
    with pytest.raises(NonFiniteLossError, match=r"3 consecutive training steps.*global step 3 \(samples \["):
        trainer(tmp_path, [NonFiniteGuard(max_consecutive=3)]).fit(
            Tiny(nan_steps=(1, 2, 3)), datamodule=datamodule(root)
        )


def test_nonfinite_count_is_logged(root: Path, tmp_path: Path) -> None:
    t = trainer(tmp_path, [NonFiniteGuard()], max_epochs=1)
    t.fit(Tiny(nan_steps=(0, 2)), datamodule=datamodule(root))
    assert float(t.callback_metrics["train/nonfinite_steps"]) == 2.0


# ---------------------------------------------------------------------------------------------- atomic save


def test_atomic_checkpoint_keeps_the_old_file_when_saving_fails(tmp_path: Path, monkeypatch) -> None:
    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    old = os.umask(0o022)
    try:
        io.save_checkpoint({"step": 1}, target)
    finally:
        os.umask(old)
    assert torch.load(target, weights_only=True) == {"step": 1}
    assert target.stat().st_mode & 0o777 == 0o644  # the usual permissions, not mkstemp's 0600

    def crash(obj, f, *a, **k):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"step": 2}, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=True) == {"step": 1}  # the previous checkpoint, intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temporary file left


# ---------------------------------------------------------------------------------------------- pre-emption


def test_signal_mid_epoch_saves_exits_and_resumes_exactly(root: Path, tmp_path: Path) -> None:
    reference = Tiny()
    trainer(tmp_path / "ref", []).fit(reference, datamodule=datamodule(root))  # 2 epochs of 5 batches

    ckpt_dir = tmp_path / "ckpt"
    preempt = PreemptionCheckpoint()
    first = Tiny(signal_at=2)
    every = ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0)
    t = trainer(tmp_path, [preempt, every], plugins=[AtomicCheckpointIO()])
    with pytest.raises(SystemExit) as stop:
        t.fit(first, datamodule=datamodule(root))
    assert stop.value.code is None  # a clean exit (status 0)
    assert preempt.saved_path == str(ckpt_dir / "last.ckpt") and len(first.seen) == 3
    assert signal.getsignal(signal.SIGUSR1) != preempt._handler  # handlers restored after the run

    second = Tiny()
    resumed = trainer(
        tmp_path, [PreemptionCheckpoint(), ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0)]
    )
    resumed.fit(second, datamodule=datamodule(root), ckpt_path="last")
    assert first.seen + second.seen == reference.seen  # same steps, same samples: nothing lost or repeated


def test_preemption_rejects_unknown_signals() -> None:
    with pytest.raises(ValueError, match="SIGNOPE"):
        PreemptionCheckpoint(signals=["SIGNOPE"])


# ---------------------------------------------------------------------------------------------- CLI defaults


def test_cli_adds_cluster_defaults_unless_configured(tmp_path: Path) -> None:
    from violetv2.cli import VioletCLI

    base = ["--trainer.accelerator=cpu", "--trainer.logger=false", f"--trainer.default_root_dir={tmp_path}"]
    model = ["--model=violetv2.tasks.pretrain.PretrainModule", "--model.mvm_targets={pixel: 1.0}"]
    data = ["--data=violetv2.data.datamodules.PretrainDataModule"]
    cli = VioletCLI(args=[*base, *model, *data], run=False)
    kinds = [type(c) for c in cli.trainer.callbacks]
    assert kinds.count(PreemptionCheckpoint) == 1 and kinds.count(NonFiniteGuard) == 1
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    guard = [
        "--trainer.callbacks+=violetv2.callbacks.safety.NonFiniteGuard",
        "--trainer.callbacks.max_consecutive=4",
    ]
    cli = VioletCLI(args=[*base, *guard, *model, *data], run=False)
    guards = [c for c in cli.trainer.callbacks if isinstance(c, NonFiniteGuard)]
    assert [g.max_consecutive for g in guards] == [4]
