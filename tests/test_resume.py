"""Resume safety of the training loaders: a checkpoint of another run setup is refused with a clear message."""

from __future__ import annotations

from pathlib import Path

import pytest

from violetv2.data.datamodules import MixedLoader, PretrainDataModule, ResumableSampler, Source
from violetv2.data.readers import read_annotations
from violetv2.data.shards import write_shards
from violetv2.data.synthetic import generate

COMMON = {"num_workers": 0, "pin_memory": False, "num_frames": 2, "image_size": 32, "max_text_len": 16}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("synthetic")
    generate(path, num_train=10, num_test=4, size=32, seconds=1.0, workers=0)
    records = read_annotations("webvid_csv", path / "webvid/results_train.csv", video_layout="flat")
    write_shards(records, path / "videos", path / "shards", samples_per_shard=3, mode="jpeg", num_frames=2)
    return path


def loader(root: Path, csv: str = "results_train.csv", **kw) -> MixedLoader:
    files = Source(
        "webvid_csv", str(root / "webvid" / csv), str(root / "videos"), options={"video_layout": "flat"}
    )
    args = {"batch_size": 2, "seed": 0, **COMMON, **kw}
    dm = PretrainDataModule(
        train=[Source(shards=str(root / "shards")), files], tokenizer=str(root / "tokenizer"), **args
    )
    dm.setup("fit")
    return dm.train_dataloader()


def saved_state(root: Path, **kw) -> dict:
    mixed = loader(root, **kw)
    it = iter(mixed)
    next(it), next(it)
    return mixed.state_dict()


def test_state_records_what_the_position_depends_on(root: Path) -> None:
    state = saved_state(root)
    shards, files = state["children"]
    assert shards["total"] == 10 and shards["batch_size"] == 2 and shards["world_size"] == 1
    assert files == {
        "size": 10,
        "world_size": 1,
        "seed": 0,
        "shuffle": True,
        "batch_size": 2,
        "drop_last": True,
    }


def test_the_same_setup_resumes(root: Path) -> None:
    fresh = loader(root)
    fresh.load_state_dict(saved_state(root))
    assert sum(fresh.taken) == 2


@pytest.mark.parametrize(
    ("change", "key"),
    [({"batch_size": 3}, "batch_size"), ({"seed": 1}, "seed")],
)
def test_changed_batch_size_or_seed_is_refused(root: Path, change: dict, key: str) -> None:
    state = saved_state(root)
    with pytest.raises(ValueError, match=rf"cannot resume .*'{key}' was 2|cannot resume .*'{key}' was 0"):
        loader(root, **change).load_state_dict(state)


def test_changed_dataset_size_is_refused(root: Path) -> None:
    state = saved_state(root)
    state["children"][1]["size"] = 12  # as if the annotation file had grown
    with pytest.raises(ValueError, match=r"train source 1 .*results_train.csv.*'size' was 12, is now 10"):
        loader(root).load_state_dict(state)


def test_changed_world_size_is_refused(root: Path) -> None:
    state = saved_state(root)
    for child in state["children"]:
        child["world_size"] = 8
    with pytest.raises(ValueError, match=r"train source 0 \(shards .*'world_size' was 8, is now 1"):
        loader(root).load_state_dict(state)
    state["children"][0]["world_size"] = 1
    with pytest.raises(ValueError, match=r"train source 1 .*'world_size' was 8, is now 1"):
        loader(root).load_state_dict(state)


def test_changed_sources_are_refused(root: Path) -> None:
    state = saved_state(root)
    state["children"] = state["children"][::-1]
    with pytest.raises(ValueError, match="changed between shards and annotation files"):
        loader(root).load_state_dict(state)
    state["taken"] = [1]
    with pytest.raises(ValueError, match="had 1 sources, this one has 2"):
        loader(root).load_state_dict(state)


def test_sampler_fingerprint() -> None:
    sampler = ResumableSampler(10, shuffle=True, seed=3, rank=1, world_size=2)
    assert sampler.fingerprint() == {"size": 10, "world_size": 2, "seed": 3, "shuffle": True}
