"""Cluster behaviour that needs no second process: evaluation shards split over ranks without duplicates."""

from __future__ import annotations

from collections import Counter

import pytest

from violetv2.data.datamodules import PretrainDataModule, Source
from violetv2.data.readers import read_annotations
from violetv2.data.shards import ShardedVideoTextDataset, ShardLoader, write_shards
from violetv2.data.synthetic import generate
from violetv2.data.text import load_tokenizer

NUM = 13
KW = {"num_frames": 2, "image_size": 32, "max_text_len": 16}


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("synthetic")
    paths = generate(root, num_train=NUM, num_test=4, size=32, seconds=1.0, workers=0)
    records = read_annotations("webvid_csv", paths.webvid_train, video_layout="flat")
    write_shards(records, paths.videos, root / "shards", samples_per_shard=4, mode="jpeg", num_frames=2)
    ids = {r.sample_id for r in records}
    return {"root": root, "shards": root / "shards", "tok": load_tokenizer(str(paths.tokenizer)), "ids": ids}


def rank_ids(bench: dict, rank: int, world: int, train: bool, workers: int = 0, batch: int = 2) -> list[str]:
    ds = ShardedVideoTextDataset(
        bench["shards"],
        bench["tok"],
        batch_size=batch,
        train=train,
        rank=rank,
        world_size=world,
        seed=3,
        **KW,
    )
    return [i for b in ShardLoader(ds, num_workers=workers) for i in b.sample_ids]


@pytest.mark.parametrize(("world", "workers"), [(2, 0), (3, 2), (4, 0), (5, 0)])
def test_evaluation_shards_cover_the_split_once(bench: dict, world: int, workers: int) -> None:
    per_rank = [rank_ids(bench, r, world, train=False, workers=workers) for r in range(world)]
    seen = Counter(i for ids in per_rank for i in ids)
    assert set(seen) == bench["ids"] and max(seen.values()) == 1  # every sample exactly once
    sizes = sorted(len(ids) for ids in per_rank)
    assert sizes[-1] - sizes[0] <= 1 and sum(sizes) == NUM


def test_training_shards_stay_padded_and_equal(bench: dict) -> None:
    per_rank = [rank_ids(bench, r, 3, train=True, batch=1) for r in range(3)]
    assert {len(ids) for ids in per_rank} == {5}  # ceil(13 / 3): equal steps on every rank
    seen = Counter(i for ids in per_rank for i in ids)
    assert set(seen) == bench["ids"] and sum(seen.values()) == 15  # two wrap-around repeats


def test_training_epoch_with_drop_last_repeats_nothing_within_a_rank(bench: dict) -> None:
    for rank in range(2):
        ids = rank_ids(bench, rank, 2, train=True)
        assert len(ids) == len(set(ids))


def test_datamodule_evaluation_shards_are_unpadded(bench: dict) -> None:
    source = Source(shards=str(bench["shards"]))
    dm = PretrainDataModule(
        train=[source], val=[source], tokenizer=str(bench["root"] / "tokenizer"), batch_size=2,
        num_workers=0, pin_memory=False, **KW,
    )  # fmt: skip
    dm.setup("fit")
    assert dm.datasets["train"][0].pad_ranks and not dm.datasets["val"][0].pad_ranks


def test_compile_switch_compiles_in_place_and_keeps_checkpoint_keys() -> None:
    from violetv2.tasks.pretrain import PretrainModule

    plain = PretrainModule(preset="tiny", mvm_targets={"pixel": 1.0})
    module = PretrainModule(
        preset="tiny", mvm_targets={"pixel": 1.0}, compile=True, compile_options={"backend": "eager"}
    )
    assert module.model.backbone.video._compiled_call_impl is None
    module.configure_model()
    module.configure_model()  # Lightning calls it per stage: compiled once
    for part in (module.model.backbone.video, module.model.backbone.fusion):
        assert part._compiled_call_impl is not None
    assert plain.model.backbone.video._compiled_call_impl is None
    assert list(module.state_dict()) == list(plain.state_dict())  # no _orig_mod. prefixes in checkpoints
