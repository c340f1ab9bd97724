"""A few tiny pre-training steps on one process or under Lightning's DDP (CPU, gloo); used by test_ddp.py.

``python _ddp_pretrain.py --devices 2 --global-batch 8 --steps 3 --out DIR``: every process trains on batches
of ``global_batch / devices`` samples dealt by Lightning's ``DistributedSampler`` (rank ``r`` gets rows
``r, r + w, ...`` of each global batch of its permutation; one process reads that permutation in order) and
writes
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
from torch.utils.data import DataLoader, Dataset

from violetv2.callbacks.teachers import MVMTeacherCallback
from violetv2.data.batch import VideoTextBatch
from violetv2.tasks.pretrain import PretrainModule


class Samples(Dataset):
    """Deterministic samples (the same in every process); text without padding, so that every row has the
    same token count."""

    def __init__(self, size: int, frames: int = 2, length: int = 10) -> None:
        self.size, self.frames, self.length = size, frames, length

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(1000 + i)
        ids = torch.randint(1000, 1020, (self.length,), generator=g)
        ids[0], ids[-1] = 101, 102  # [CLS] ... [SEP]
        return torch.randn(self.frames, 3, 64, 64, generator=g), ids


def collate(samples: list[tuple[torch.Tensor, torch.Tensor]]) -> VideoTextBatch:
    video, ids = (torch.stack(x) for x in zip(*samples))
    return VideoTextBatch(video=video, text_ids=ids, text_mask=torch.ones_like(ids))


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
        max_steps=args.steps, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[record, MVMTeacherCallback()],
    )  # fmt: skip
    # Under DDP Lightning puts its DistributedSampler in (shuffled with seed PL_GLOBAL_SEED + epoch): rank r of w
    # gets perm[r], perm[r + w], ...; one process reads the same permutation in order, so that its global
    # batch k is perm[k * global_batch : (k + 1) * global_batch], dealt to the ranks as the sampler deals it
    data = Samples(args.steps * args.global_batch)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0)).tolist()
    loader = DataLoader(
        data,
        batch_size=args.global_batch // args.devices,
        sampler=order if args.devices == 1 else None,
        collate_fn=collate,
    )
    trainer.fit(module, loader)
    out = {"masks": record.masks, "losses": record.losses, "world_size": trainer.world_size}
    if trainer.global_rank == 0:
        out["state_dict"] = {k: v.detach().cpu() for k, v in module.state_dict().items()}
        out["initial"] = initial
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(out, args.out / f"rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    main()
