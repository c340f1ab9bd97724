"""Bad-input matrix: every kind of broken input fails (or is skipped) with a message naming the file / key /
value, never with a traceback from deep inside torch."""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from violetv2.callbacks.safety import NonFiniteGuard
from violetv2.data.datamodules import PretrainDataModule, Source
from violetv2.data.dataset import VideoTextDataset, collate
from violetv2.data.readers import read_annotations
from violetv2.data.records import Record
from violetv2.data.safe_pickle import UnsafePickleError
from violetv2.data.safe_pickle import load as load_pickle
from violetv2.data.shards import ShardedVideoTextDataset, ShardIndex, write_shards
from violetv2.data.synthetic import generate
from violetv2.data.text import load_tokenizer
from violetv2.mvm.targets import build_targets
from violetv2.tasks.pretrain import PretrainModule

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore:LightningCLI.s args parameter")
KW = {"num_frames": 2, "image_size": 32, "max_text_len": 16}
FLAT = {"video_layout": "flat"}


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    generate(root, num_train=6, num_test=4, size=32, seconds=1.0, workers=0)
    return root


def tiny(**kw) -> PretrainModule:
    return PretrainModule(preset="tiny", mvm_targets={"pixel": 1.0}, **kw)


def quiet_trainer(tmp_path: Path, **kw) -> L.Trainer:
    args = {
        "accelerator": "cpu",
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    args |= {"num_sanity_val_steps": 0, "limit_val_batches": 0, "max_steps": 1, "default_root_dir": tmp_path}
    return L.Trainer(**{**args, **kw})


def datamodule(bench: Path, **kw) -> PretrainDataModule:
    source = Source(
        "webvid_csv", str(bench / "webvid/results_train.csv"), str(bench / "videos"), options=FLAT
    )
    args = {"tokenizer": str(bench / "tokenizer"), "batch_size": 2, "num_workers": 0, "pin_memory": False}
    return PretrainDataModule(train=[source], **{**args, **KW, **kw})


# ---------------------------------------------------------------------------------------------- videos


def test_corrupt_truncated_empty_and_missing_videos_are_skipped_counted_and_named(
    bench: Path, tmp_path: Path, caplog
) -> None:
    good = read_annotations("webvid_csv", bench / "webvid/results_train.csv", video_layout="flat")[0]
    video = next((bench / "videos").glob(f"{good.video}*"))
    (tmp_path / "good.mp4").write_bytes(video.read_bytes())
    (tmp_path / "truncated.mp4").write_bytes(video.read_bytes()[: video.stat().st_size // 3])
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(300))
    names = ["good", "corrupt", "truncated", "empty", "missing"]
    records = [Record(sample_id=n, video=f"{n}.mp4", text=f"a {n} video") for n in names]
    ds = VideoTextDataset(records, tmp_path, load_tokenizer(str(bench / "tokenizer")), train=False, **KW)
    with caplog.at_level(logging.WARNING, logger="violetv2.data.dataset"):
        batch = collate([ds[i] for i in range(len(ds))])
    assert batch.sample_ids == ["good"] * 5  # each unreadable sample replaced by the next readable one
    assert ds.skipped >= 4 and batch.skipped >= 4
    for name in names[1:]:
        assert sum(f"{name}.mp4" in r.getMessage() for r in caplog.records) == 1  # named, once


def test_malformed_annotation_files_name_the_file(tmp_path: Path) -> None:
    bad_csv = tmp_path / "webvid.csv"
    bad_csv.write_text("videoid,caption_typo\n1,a caption\n")
    with pytest.raises(ValueError, match="webvid.csv"):
        read_annotations("webvid_csv", bad_csv)
    bad_json = tmp_path / "ret.json"
    bad_json.write_text('[{"video": "a.mp4", "caption": ')
    with pytest.raises(ValueError, match="ret.json"):
        read_annotations("umt_ret_json", bad_json)


def test_empty_dataset_names_the_annotation_file(bench: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    header = (bench / "webvid/results_train.csv").read_text().splitlines()[0]
    empty.write_text(header + "\n")
    dm = PretrainDataModule(
        train=[Source("webvid_csv", str(empty), str(bench / "videos"), options=FLAT)],
        tokenizer=str(bench / "tokenizer"), num_workers=0, **KW,
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"empty.csv.*no records"):
        dm.setup("fit")


# ---------------------------------------------------------------------------------------------- shards


def test_shard_entry_escaping_its_directory_is_refused(bench: Path, tmp_path: Path) -> None:
    records = read_annotations("webvid_csv", bench / "webvid/results_train.csv", video_layout="flat")
    write_shards(records[:2], bench / "videos", tmp_path / "shards", samples_per_shard=2)
    index = json.loads((tmp_path / "shards/index.json").read_text())
    shutil.copy(tmp_path / "shards/shard-000000.tar", tmp_path / "outside.tar")
    for name in ("../outside.tar", str(tmp_path / "outside.tar"), "sub/../../outside.tar"):
        index["shards"] = [[name, 2]]
        (tmp_path / "shards/index.json").write_text(json.dumps(index))
        with pytest.raises(ValueError, match=r"index.json: key 'shards' lists .*not a plain file name"):
            ShardIndex.load(tmp_path / "shards")
    with pytest.raises(ValueError, match="not a plain file name"):
        ShardedVideoTextDataset(
            tmp_path / "shards", load_tokenizer(str(bench / "tokenizer")), batch_size=1, **KW
        )


# ---------------------------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def pretrain_ckpt(bench: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ckpt")
    model = tiny(
        config={"image_size": 32, "num_frames": 2, "max_grid": 1}, tokenizer=str(bench / "tokenizer")
    )
    trainer = quiet_trainer(out)
    trainer.fit(model, datamodule=datamodule(bench))
    trainer.save_checkpoint(out / "pretrain.ckpt")
    return out / "pretrain.ckpt"


class OtherTask(PretrainModule):
    """Stands for another task module (a subclass of the same base)."""


def test_checkpoint_of_another_preset_names_both_architectures(pretrain_ckpt: Path) -> None:
    with pytest.raises(
        ValueError, match=r"another architecture.*preset 'tiny'.*hidden_size.*differ in shape"
    ):
        PretrainModule.load_from_checkpoint(
            pretrain_ckpt, config={"image_size": 32, "num_frames": 2, "max_grid": 1, "hidden_size": 32}
        )


def test_checkpoint_of_another_task(pretrain_ckpt: Path, bench: Path, tmp_path: Path) -> None:
    with pytest.raises(
        TypeError, match=r"pretrain.ckpt holds a violetv2.tasks.pretrain.PretrainModule, which is not a"
    ):
        OtherTask.load_from_checkpoint(pretrain_ckpt)
    other = OtherTask(
        preset="tiny", config={"image_size": 32, "num_frames": 2, "max_grid": 1}, mvm_targets={"pixel": 1.0}
    )
    with pytest.raises(
        ValueError,
        match=r"pretrain.ckpt was saved by violetv2.tasks.pretrain.PretrainModule.*init_checkpoint",
    ):
        quiet_trainer(tmp_path, max_steps=2).fit(
            other, datamodule=datamodule(bench), ckpt_path=str(pretrain_ckpt)
        )


def test_malicious_checkpoint_and_pickle_are_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"state_dict": {}, "x": Exploit()}, tmp_path / "evil.ckpt")  # a torch zip archive
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"x": Exploit()}))
    with pytest.raises(ValueError, match=r"evil.ckpt: not loaded"):
        PretrainModule.load_from_checkpoint(tmp_path / "evil.ckpt")
    with pytest.raises(UnsafePickleError, match=r"evil.pkl.*system"):
        load_pickle(tmp_path / "evil.pkl")
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------- model fit


def test_tokenizer_larger_than_the_vocabulary(bench: Path, tmp_path: Path) -> None:
    model = tiny(config={"image_size": 32, "num_frames": 2, "max_grid": 1, "vocab_size": 50})
    with pytest.raises(ValueError, match=r"tokenizer '.*tokenizer' has \d+ tokens, .*vocab_size=50"):
        quiet_trainer(tmp_path).fit(model, datamodule=datamodule(bench))


def test_frames_and_image_size_beyond_the_position_tables() -> None:
    model = tiny()  # tiny: max_frames 6, a 4 x 4 spatial table at stride 32
    ids = torch.ones(1, 8, dtype=torch.long)
    with pytest.raises(ValueError, match=r"exceed the temporal table \(6 rows\)"):
        model.model(torch.zeros(1, 14, 3, 64, 64), ids, torch.ones_like(ids))
    with pytest.raises(ValueError, match=r"8x8 token grid needs 65 spatial positions, the table has 17"):
        model.model(torch.zeros(1, 2, 3, 256, 256), ids, torch.ones_like(ids))


def test_teacher_path_that_does_not_exist(tmp_path: Path) -> None:
    targets = build_targets(
        {"sif": 1.0}, {"sif": {"model_name_or_path": str(tmp_path / "no-teacher"), "feature_dim": 16}}
    )
    with pytest.raises(OSError, match="no-teacher"):
        targets.setup("cpu")


def test_nan_in_the_input_video_is_skipped_and_named(bench: Path, tmp_path: Path, caplog) -> None:
    dm = datamodule(bench)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    batch.video[0, 0, 0, 0, 0] = float("nan")
    model = tiny(
        config={"image_size": 32, "num_frames": 2, "max_grid": 1}, tokenizer=str(bench / "tokenizer")
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    guard = NonFiniteGuard(max_consecutive=2)
    with caplog.at_level(logging.WARNING, logger="violetv2.callbacks.safety"):
        quiet_trainer(tmp_path, callbacks=[guard]).fit(
            model, train_dataloaders=DataLoader([batch], batch_size=None, collate_fn=lambda b: b)
        )
    assert guard.total == 1
    message = " ".join(r.getMessage() for r in caplog.records)
    assert batch.sample_ids[0] in message and "input video has 1 non-finite values" in message
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # weights untouched


# ---------------------------------------------------------------------------------------------- config


def test_config_with_an_unknown_key_names_it(tmp_path: Path, capsys) -> None:
    from violetv2.cli import main

    config = {
        "model": {"class_path": "violetv2.tasks.pretrain.PretrainModule", "init_args": {"mask_ratoi": 0.3}}
    }
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--config", str(path), "--print_config"])
    assert stop.value.code == 2
    assert "mask_ratoi" in capsys.readouterr().err
