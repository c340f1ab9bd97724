"""Streaming shards: packing, rank / worker split, per-epoch shuffling and exact mid-epoch resume."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from violetv2.data.dataset import VideoTextDataset, collate
from violetv2.data.readers import read_annotations
from violetv2.data.shards import (
    ShardedVideoTextDataset,
    ShardIndex,
    ShardLoader,
    main,
    round_robin_consumed,
    split_evenly,
    write_shards,
)
from violetv2.data.synthetic import generate
from violetv2.data.text import load_tokenizer
from violetv2.data.video import read_clip

NUM_VIDEOS = 13  # 13 readable videos, batch 3 -> 5 batches: two workers get 3 and 2 (unequal on purpose)
KW = {"num_frames": 2, "image_size": 32, "max_text_len": 16}


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("synthetic")
    paths = generate(root, num_train=NUM_VIDEOS, num_test=2, size=32, seconds=1.0, workers=0)
    records = read_annotations("webvid_csv", paths.webvid_train, video_layout="flat")
    broken = records[0].__class__(sample_id="broken", video="broken.mp4", text="a broken video")
    (paths.videos / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    missing = records[0].__class__(sample_id="missing", video="nowhere.mp4", text="no file")
    records = [*records[:5], broken, *records[5:], missing]
    out = {"records": records, "videos": paths.videos, "tokenizer": load_tokenizer(str(paths.tokenizer))}
    for mode in ("bytes", "jpeg"):
        shards = root / f"shards_{mode}"
        out[f"report_{mode}"] = write_shards(
            records, paths.videos, shards, samples_per_shard=4, mode=mode, num_frames=4, image_size=32
        )
        out[mode] = shards
    return out


def dataset(bench: dict, mode: str = "bytes", **kw) -> ShardedVideoTextDataset:
    args = {"batch_size": 3, "train": True, "seed": 7, "shuffle_buffer": 3, **KW, **kw}
    return ShardedVideoTextDataset(bench[mode], bench["tokenizer"], **args)


def ids(batches) -> list[str]:
    return [i for b in batches for i in b.sample_ids]


@pytest.mark.parametrize("mode", ["bytes", "jpeg"])
def test_packing_counts_and_reports_unreadable_videos(bench: dict, mode: str) -> None:
    report = bench[f"report_{mode}"]
    assert report.num_samples == NUM_VIDEOS and report.num_shards == 4
    assert sorted(s["sample_id"] for s in report.skipped) == ["broken", "missing"]
    index = ShardIndex.load(bench[mode])
    assert [n for _, n in index.shards] == [4, 4, 4, 1] and index.total == NUM_VIDEOS
    assert json.loads((bench[mode] / "index.json").read_text())["total"] == NUM_VIDEOS
    assert len(index.skipped) == 2 and index.mode == mode


def test_jpeg_payload_is_the_resized_frames(bench: dict) -> None:
    import webdataset as wds

    sample = next(iter(wds.tariterators.tarfile_samples([{"url": str(bench["jpeg"] / "shard-000000.tar")}])))
    clip = read_clip(sample["video"], 4)
    assert clip.shape == (4, 3, 32, 32)  # 4 frames kept, shorter side 32
    record = json.loads(sample["json"])
    assert record["sample_id"] == bench["records"][0].sample_id


def test_bytes_samples_equal_the_map_style_dataset(bench: dict) -> None:
    """Shard decoding goes through VideoTextDataset: same clip, same tokens (evaluation, no randomness)."""
    shard = dataset(bench, train=False, shuffle=False, batch_size=13)
    batch = next(iter(ShardLoader(shard)))
    good = [r for r in bench["records"] if r.sample_id not in ("broken", "missing")]
    mapped = VideoTextDataset(good, bench["videos"], bench["tokenizer"], train=False, **KW)
    expected = collate([mapped[i] for i in range(len(good))])
    assert batch.sample_ids == expected.sample_ids
    torch.testing.assert_close(batch.video, expected.video)
    assert torch.equal(batch.text_ids, expected.text_ids)


def test_epoch_covers_every_sample_once_and_reshuffles(bench: dict) -> None:
    ds = dataset(bench)
    loader = ShardLoader(ds)
    epoch0 = ids(loader)
    epoch1 = ids(loader)  # the loader rolls over to epoch 1 after a full pass
    assert len(loader) == 5 and Counter(epoch0) == Counter(epoch1) and len(set(epoch0)) == NUM_VIDEOS
    assert epoch0 != epoch1
    assert ids(ShardLoader(dataset(bench))) == epoch0  # same seed and epoch: same order
    assert ids(ShardLoader(dataset(bench, seed=8))) != epoch0


def test_ranks_get_equal_lengths_and_cover_the_data(bench: dict) -> None:
    seen: list[str] = []
    lengths = set()
    for rank in range(3):
        ds = dataset(bench, rank=rank, world_size=3, batch_size=2)
        got = ids(ShardLoader(ds, num_workers=0))
        lengths.add((len(ShardLoader(ds)), len(got)))
        seen += got
    assert lengths == {(3, 5)}  # ceil(13 / 3) = 5 samples per rank, padded by wrap-around
    assert set(seen) == {r.sample_id for r in bench["records"]} - {"broken", "missing"}
    assert len(seen) - len(set(seen)) == 2


def test_round_robin_consumed_matches_torch_order() -> None:
    assert round_robin_consumed([3, 2], 5) == ([3, 2], 1)
    assert round_robin_consumed([3, 2], 3) == ([2, 1], 1)
    assert round_robin_consumed([1, 3], 3) == ([1, 2], 0)  # worker 0 exhausted, worker 1 continues
    assert split_evenly(5, 2) == [(0, 3), (3, 2)]
    with pytest.raises(ValueError, match="consumed"):
        round_robin_consumed([1, 1], 3)


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("epoch", [0, 1])
def test_exact_resume_mid_epoch(bench: dict, num_workers: int, epoch: int) -> None:
    full_ds = dataset(bench, "jpeg")
    full_ds.set_epoch(epoch)
    full = list(ShardLoader(full_ds, num_workers=num_workers))
    for k in (1, 3):
        first_ds = dataset(bench, "jpeg")
        first_ds.set_epoch(epoch)
        loader = ShardLoader(first_ds, num_workers=num_workers)
        it = iter(loader)
        head = [next(it) for _ in range(k)]
        state = loader.state_dict()
        del it
        assert state["epoch"] == epoch and state["batches"] == k and state["samples"] == 3 * k
        fresh = ShardLoader(dataset(bench, "jpeg"), num_workers=num_workers)
        fresh.load_state_dict(state)
        rest = list(fresh)
        assert ids(head + rest) == ids(full)
        for a, b in zip(head + rest, full):
            assert torch.equal(a.video, b.video)  # random frames and crops replayed too


def test_persistent_workers_follow_the_epoch(bench: dict) -> None:
    loader = ShardLoader(dataset(bench), num_workers=2, persistent_workers=True)
    reference = ShardLoader(dataset(bench), num_workers=2)
    assert [ids(loader) for _ in range(2)] == [ids(reference) for _ in range(2)]


def test_state_from_another_setup_is_refused(bench: dict) -> None:
    state = ShardLoader(dataset(bench)).state_dict()
    with pytest.raises(ValueError, match="batch_size"):
        ShardLoader(dataset(bench, batch_size=2)).load_state_dict(state)


def test_wrong_worker_count_is_refused(bench: dict) -> None:
    ds = dataset(bench)
    with pytest.raises(RuntimeError, match="ShardLoader"):
        list(torch.utils.data.DataLoader(ds, batch_size=None, num_workers=1))


def test_command_line(bench: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    csv = bench["videos"].parent / "webvid" / "results_train.csv"
    argv = ["--format", "webvid_csv", "--annotations", str(csv), "--video-root", str(bench["videos"])]
    report = main(
        [*argv, "--out", str(tmp_path), "--samples-per-shard", "5", "--reader-arg", "video_layout=flat"]
    )
    assert report.num_shards == 3 and ShardIndex.load(tmp_path).total == NUM_VIDEOS
    assert "wrote 13 samples in 3 shards" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
