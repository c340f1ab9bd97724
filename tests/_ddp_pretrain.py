"""A few tiny pre-training steps on one process or under Lightning's DDP (CPU, gloo); used by test_ddp.py.

``python _ddp_pretrain.py --devices 2 --global-batch 8 --steps 3 --out DIR``: every process trains on its slice
``[rank * b, (rank + 1) * b)`` of the same global batches (``b = global_batch / devices``) and writes
``DIR/rank<r>.pt``: the patch masks and the loss of every step, and (rank 0) the initial and final weights. ``--optimizer``:
the module's AdamW (default) or SGD.

The losses are chosen so that the mean of the per-rank losses is the loss of the global batch, which is what
makes one process and DDP comparable at float tolerance: MVM (random + blockwise masks mask the same number of
patches in every sample) and MLM with every text token masked (the same count per sample; MLM positions drawn
at random would give per-rank token counts, hence per-rank normalisers, that differ from the global one). VTM
is off: its in-batch negatives are, as published, drawn within each process's batch, so a global batch of 2b
has a different pool of negatives whatever the random streams. Dropout is off (each rank has its own stream).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from violetv2.data.batch import VideoTextBatch
from violetv2.tasks.pretrain import PretrainModule


def global_batches(steps: int, size: int, frames: int = 2, length: int = 10) -> list[VideoTextBatch]:
    """The same deterministic global batches in every process."""
    out = []
    for step in range(steps):
        g = torch.Generator().manual_seed(1000 + step)
        ids = torch.randint(1000, 1020, (size, length), generator=g)
        ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP], no padding: the same token count in every row
        video = torch.randn(size, frames, 3, 64, 64, generator=g)
        out.append(VideoTextBatch(video=video, text_ids=ids, text_mask=torch.ones_like(ids)))
    return out


def rows(batch: VideoTextBatch, start: int, stop: int) -> VideoTextBatch:
    """Rows ``[start, stop)`` of a batch."""
    return VideoTextBatch(batch.video[start:stop], batch.text_ids[start:stop], batch.text_mask[start:stop])


class RankSlices(L.LightningDataModule):
    """Rank ``r`` of ``w`` gets rows ``[r * b, (r + 1) * b)`` of every global batch."""

    def __init__(self, batches: list[VideoTextBatch]) -> None:
        super().__init__()
        self.batches = batches

    def train_dataloader(self) -> DataLoader:
        rank, world = self.trainer.global_rank, self.trainer.world_size
        b = len(self.batches[0]) // world
        return DataLoader([rows(x, rank * b, (rank + 1) * b) for x in self.batches], batch_size=None)


class Record(L.Callback):
    """Keeps every step's patch mask and loss."""

    def __init__(self) -> None:
        self.masks: dict[int, torch.Tensor] = {}
        self.losses: dict[int, float] = {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: PretrainModule) -> None:
        original = pl_module.patch_mask

        def patch_mask(batch: VideoTextBatch, grid: tuple[int, int]) -> torch.Tensor:
            mask = original(batch, grid)
            self.masks[trainer.fit_loop.epoch_loop.total_batch_idx] = mask.cpu()
            return mask

        pl_module.patch_mask = patch_mask

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.losses[trainer.fit_loop.epoch_loop.total_batch_idx] = float(outputs["loss"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    L.seed_everything(0, verbose=False)
    module = PretrainModule(
        preset="tiny",
        config={"dropout": 0.0, "attention_dropout": 0.0},
        vtm_head=False,
        mvm_targets={"hog": 1.0, "pixel": 1.0},
        masking=["random", "blockwise"],
        mask_ratio=0.3,
        mlm_prob=1.0,
        loss_weights={"vtm": 0.0},
        lr=1e-3,
        rng_seed=3,
    )
    if args.optimizer == "sgd":  # plain SGD: no Adam normalisation to magnify rounding of near-zero gradients
        module.configure_optimizers = lambda: torch.optim.SGD(module.parameters(), lr=0.01)
    record = Record()
    initial = {k: v.detach().clone() for k, v in module.state_dict().items()}
    trainer = L.Trainer(
        accelerator="cpu", devices=args.devices, strategy="ddp" if args.devices > 1 else "auto",
        max_steps=args.steps, use_distributed_sampler=False, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[record],
    )  # fmt: skip
    trainer.fit(module, datamodule=RankSlices(global_batches(args.steps, args.global_batch)))
    out = {"masks": record.masks, "losses": record.losses, "world_size": trainer.world_size}
    if trainer.global_rank == 0:
        out["state_dict"] = {k: v.detach().cpu() for k, v in module.state_dict().items()}
        out["initial"] = initial
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(out, args.out / f"rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    main()
