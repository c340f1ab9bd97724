"""Per-sample random streams: ranks draw different masks, a resume draws the same ones, one process running the
global batch draws what the ranks drew, validation draws are fixed across epochs, sources logged apart."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from violetv2.data.batch import VideoTextBatch
from violetv2.mvm.masking import STRATEGIES, MaskSampler
from violetv2.rng import SampleStreams, stream_seed, uniform
from violetv2.tasks.losses import mask_tokens, vtm_pairs
from violetv2.tasks.pretrain import PretrainModule

B, T = 4, 2


def _batch(b: int = B, seed: int = 0) -> VideoTextBatch:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 1020, (b, 10), generator=g)
    ids[:, 0], ids[:, 7], ids[:, 8:] = 101, 102, 0  # [CLS] ... [SEP] [PAD] [PAD] (bert ids)
    video = torch.randn(b, T, 3, 64, 64, generator=g)
    return VideoTextBatch(video=video, text_ids=ids, text_mask=(ids != 0).long())


def _module(**kwargs) -> PretrainModule:
    torch.manual_seed(0)
    defaults = {"preset": "tiny", "mvm_targets": {"pixel": 1.0}, "lr": 1e-3, "rng_seed": 7}
    return PretrainModule(**{**defaults, **kwargs})


def _trainer(tmp_path, **kwargs) -> L.Trainer:
    defaults = {
        "accelerator": "cpu", "logger": False, "enable_progress_bar": False, "enable_model_summary": False,
        "enable_checkpointing": False, "default_root_dir": tmp_path, "num_sanity_val_steps": 0,
    }  # fmt: skip
    return L.Trainer(**{**defaults, **kwargs})


# ------------------------------------------------------------------ streams and the functions that take them


def test_stream_seed_separates_every_part_of_the_key() -> None:
    base = stream_seed(0, "train", 3, 5, "mask")
    assert base == stream_seed(0, "train", 3, 5, "mask") and 0 <= base < 2**63
    others = [(1, "train", 3, 5, "mask"), (0, "val", 3, 5, "mask"), (0, "train", 4, 5, "mask"),
              (0, "train", 3, 6, "mask"), (0, "train", 3, 5, "mlm")]  # fmt: skip
    assert len({base, *(stream_seed(*k) for k in others)}) == 6


def test_uniform_rows_depend_only_on_their_own_generator() -> None:
    whole = uniform((4, 3), SampleStreams(0, ("train", 1), range(4)).generators("x"), None)
    half = uniform((2, 3), SampleStreams(0, ("train", 1), [2, 3]).generators("x"), None)
    assert torch.equal(whole[2:], half) and not torch.equal(whole[:2], half)
    with pytest.raises(ValueError, match="per-row generators"):
        uniform((3, 3), SampleStreams(0, ("train", 1), range(4)).generators("x"), None)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_masks_do_not_depend_on_how_the_batch_is_split(strategy: str) -> None:
    """Rows 2-3 of a 4-row draw = a 2-row draw at positions 2-3: what DDP rank 1 of 2 draws at b = 2."""
    sampler = MaskSampler([strategy, "random"], ratio=0.3)
    attention = torch.rand(4, 3, 16, generator=torch.Generator().manual_seed(0))

    def draw(positions: list[int], step: int = 0) -> torch.Tensor:
        gens = SampleStreams(0, ("train", step), positions).generators("mask")
        att = attention[positions] if strategy == "attended" else None
        return sampler(len(positions), 3, 4, 4, attention=att, generator=gens)

    whole = draw([0, 1, 2, 3])
    assert torch.equal(whole[:2], draw([0, 1])) and torch.equal(whole[2:], draw([2, 3]))
    assert torch.equal(whole, draw([0, 1, 2, 3]))
    assert not torch.equal(whole, draw([0, 1, 2, 3], step=1))


def test_mlm_positions_and_negatives_from_per_row_streams() -> None:
    ids = _batch(6).text_ids
    kwargs = {"mask_token_id": 103, "vocab_size": 1024, "special_ids": [0, 100, 101, 102], "mode": "bert"}

    def mlm(positions: list[int], step: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        gens = SampleStreams(0, ("train", step), positions).generators("mlm")
        return mask_tokens(ids[positions], (ids[positions] != 0).long(), generator=gens, **kwargs)

    masked, labels = mlm(list(range(6)))
    masked_half, labels_half = mlm([3, 4, 5])
    assert torch.equal(masked[3:], masked_half) and torch.equal(labels[3:], labels_half)
    assert not torch.equal(labels, mlm(list(range(6)), step=1)[1])
    pairs = [
        vtm_pairs(6, 3, generator=SampleStreams(0, ("train", s), range(6)).generators("vtm"))
        for s in (0, 0, 1)
    ]
    assert torch.equal(pairs[0], pairs[1]) and not torch.equal(pairs[0], pairs[2])
    assert (pairs[0][:, 0] == torch.arange(6)).all() and (pairs[0][:, 1:] != torch.arange(6)[:, None]).all()


# ------------------------------------------------------------------ the pre-training module


def _rows(batch: VideoTextBatch, index: slice) -> VideoTextBatch:
    return VideoTextBatch(batch.video[index], batch.text_ids[index], batch.text_mask[index])


def _draws(module: PretrainModule, batch: VideoTextBatch, rank: int, world: int, monkeypatch, step: int = 5):
    """(patch mask, MLM labels, VTM pairs) drawn by ``rank`` of ``world`` at training step ``step``."""
    monkeypatch.setattr(PretrainModule, "_rank_and_world", lambda self: (rank, world))
    grid = module.model.backbone.grid(batch.video)
    with module.random_streams(len(batch), "train", step):
        mask = module.patch_mask(batch, grid)
        gens = module._generators("mlm")
        labels = mask_tokens(batch.text_ids, batch.text_mask, mask_token_id=103, vocab_size=1024,
                             special_ids=[0, 100, 101, 102], prob=0.3, generator=gens)[1]  # fmt: skip
        pairs = vtm_pairs(len(batch), 3, generator=module._generators("vtm"))
    return mask, labels, pairs


def _interleave(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Rows a0 b0 a1 b1 ...: the global batch a DistributedSampler deals to 2 ranks as a and b."""
    return torch.stack([a, b], 1).flatten(0, 1)


def test_two_ranks_draw_different_masks_one_process_draws_both(monkeypatch) -> None:
    module = _module(masking=["random", "blockwise"], mask_ratio=0.3)
    batch = _batch(2 * B)  # global batch; a DistributedSampler gives rank r the rows r, r + 2, ...
    rank0 = _draws(module, _rows(batch, slice(0, None, 2)), 0, 2, monkeypatch)
    rank1 = _draws(module, _rows(batch, slice(1, None, 2)), 1, 2, monkeypatch)
    assert not torch.equal(rank0[0], rank1[0])  # different masks on the two ranks ...
    assert not torch.equal(rank0[1], rank1[1])  # ... and different MLM positions
    single = _draws(module, batch, 0, 1, monkeypatch)  # one process, the global batch of 2B
    assert torch.equal(single[0], _interleave(rank0[0], rank1[0]))
    assert torch.equal(single[1], _interleave(rank0[1], rank1[1]))
    again = _draws(module, _rows(batch, slice(1, None, 2)), 1, 2, monkeypatch)
    assert all(torch.equal(a, b) for a, b in zip(rank1, again))  # same rank, same step: same draws
    later = _draws(module, _rows(batch, slice(1, None, 2)), 1, 2, monkeypatch, step=6)
    assert not torch.equal(rank1[0], later[0])
    short = _draws(module, _rows(batch, slice(1, 4, 2)), 1, 2, monkeypatch)  # a short last batch: no overlap
    assert torch.equal(short[0], rank1[0][:2])


class _Recorder(L.Callback):
    """Records the masks drawn in every training / validation batch and the training losses."""

    def __init__(self) -> None:
        self.train: dict[int, torch.Tensor] = {}
        self.val: list[tuple[int, tuple, torch.Tensor]] = []
        self.losses: dict[int, float] = {}

    def setup(self, trainer, pl_module, stage) -> None:  # noqa: ANN001
        original = pl_module.patch_mask

        def patch_mask(batch, grid):  # noqa: ANN001, ANN202
            mask = original(batch, grid)
            context = pl_module._streams.context
            if context[0] == "train":
                self.train[context[1]] = mask
            else:
                self.val.append((trainer.current_epoch, context, mask))
            return mask

        pl_module.patch_mask = patch_mask

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.losses[trainer.fit_loop.epoch_loop.total_batch_idx] = float(outputs["loss"])


def test_resume_draws_the_same_masks_and_dropout(tmp_path) -> None:
    loader = DataLoader([_batch(seed=i) for i in range(2)], batch_size=None)

    class SaveAtStep2(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
            if trainer.global_step == 2:
                trainer.save_checkpoint(tmp_path / "step2.ckpt")

    straight = _Recorder()
    _trainer(tmp_path, max_steps=4, callbacks=[straight, SaveAtStep2()]).fit(_module(), loader)
    resumed = _Recorder()
    trainer = _trainer(tmp_path, max_steps=4, callbacks=[resumed])
    trainer.fit(_module(), loader, ckpt_path=tmp_path / "step2.ckpt")
    assert sorted(straight.train) == [0, 1, 2, 3] and sorted(resumed.train) == [2, 3]
    assert not torch.equal(straight.train[0], straight.train[2])  # same batch, later step: new masks
    for step in (2, 3):
        assert torch.equal(resumed.train[step], straight.train[step]), step
        # same weights, optimizer state, masks and dropout: the same loss
        assert resumed.losses[step] == pytest.approx(straight.losses[step], rel=1e-6, abs=1e-6), step


def test_validation_draws_are_fixed_and_sources_are_logged_apart(tmp_path) -> None:
    module = _module()
    sources = {"msrvtt": DataLoader([_batch(seed=5)], batch_size=None),
               "webvid": DataLoader([_batch(seed=5), _batch(seed=6)], batch_size=None)}  # fmt: skip
    recorder = _Recorder()
    train = DataLoader([_batch(seed=1)], batch_size=None)
    trainer = _trainer(tmp_path, max_epochs=2, callbacks=[recorder])
    trainer.fit(module, train, val_dataloaders=sources)
    metrics = trainer.callback_metrics
    assert {"val/msrvtt/loss", "val/webvid/loss", "val/webvid/mlm_loss"} <= set(metrics), sorted(metrics)
    assert "val/loss" not in metrics
    by_key: dict[tuple, list[torch.Tensor]] = {}
    for _epoch, context, mask in recorder.val:
        by_key.setdefault(context, []).append(mask)
    assert sorted(by_key) == [("val", 0, 0), ("val", 1, 0), ("val", 1, 1)]
    assert all(len(m) == 2 and torch.equal(m[0], m[1]) for m in by_key.values())  # epoch 0 == epoch 1
    # the same batch in two sources gets different draws (the source is part of the key) ...
    assert not torch.equal(by_key[("val", 0, 0)][0], by_key[("val", 1, 0)][0])
    # ... and validating twice gives the same losses (fixed masks, MLM positions, negatives)
    loaders = list(sources.values())
    first = trainer.validate(module, loaders, verbose=False)
    second = trainer.validate(module, loaders, verbose=False)
    assert first == second and {"val/0/loss", "val/1/mlm_loss"} <= set(first[0]) | set(first[1])


def test_one_validation_source_keeps_the_plain_names(tmp_path) -> None:
    trainer = _trainer(tmp_path)
    (out,) = trainer.validate(_module(), DataLoader([_batch()], batch_size=None), verbose=False)
    assert {"val/loss", "val/vtm_loss", "val/mlm_loss", "val/mvm_loss"} <= set(out)
