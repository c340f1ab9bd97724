"""Pre-emption end to end: SIGTERM a real `violet fit` mid-epoch, resume with `--ckpt_path last`, and compare the
sample ids trained on both sides with the uninterrupted order (map-style source + shard source)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from violetv2.data.datamodules import PretrainDataModule, Source
from violetv2.data.readers import read_annotations
from violetv2.data.shards import write_shards
from violetv2.data.synthetic import generate

ROOT = Path(__file__).resolve().parents[1]
DATA = {"batch_size": 2, "num_frames": 2, "image_size": 32, "max_text_len": 16, "seed": 5}


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    generate(root, num_train=10, num_test=4, size=32, seconds=1.0, workers=0)
    records = read_annotations("webvid_csv", root / "webvid/results_train.csv", video_layout="flat")
    write_shards(
        records[:8], root / "videos", root / "shards", samples_per_shard=3, mode="jpeg", num_frames=2
    )
    return root


def sources(root: Path) -> list[dict]:
    files = {"format": "webvid_csv", "annotations": str(root / "webvid/results_train.csv")}
    files |= {"video_root": str(root / "videos"), "options": {"video_layout": "flat"}}
    return [{"shards": str(root / "shards")}, files]


def write_config(root: Path, run: Path, log: Path) -> Path:
    config = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu", "devices": 1, "max_epochs": 2, "logger": False, "enable_progress_bar": False,
            "enable_model_summary": False, "num_sanity_val_steps": 0, "limit_val_batches": 0,
            "default_root_dir": str(run),
            "callbacks": [
                {"class_path": "_recorder.SampleRecorder", "init_args": {"path": str(log), "delay": 0.15}},
                {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                 "init_args": {"dirpath": str(run / "checkpoints"), "save_last": True, "save_top_k": 0}},
            ],
        },
        "model": {
            "class_path": "violetv2.tasks.pretrain.PretrainModule",
            "init_args": {"preset": "tiny", "config": {"image_size": 32, "num_frames": 2, "max_grid": 1},
                          "mvm_targets": {"pixel": 1.0}, "tokenizer": str(root / "tokenizer")},
        },
        "data": {
            "class_path": "violetv2.data.datamodules.PretrainDataModule",
            "init_args": {"train": sources(root), "tokenizer": str(root / "tokenizer"), "num_workers": 0,
                          "pin_memory": False, **DATA},
        },
    }  # fmt: skip
    path = run / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def violet(config: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT / 'tests'}", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "violetv2", "fit", "--config", str(config), *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def lines(log: Path) -> list[dict]:
    return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []


def expected_order(root: Path) -> list[list[str]]:
    train = [Source(**s) for s in sources(root)]
    dm = PretrainDataModule(
        train=train, tokenizer=str(root / "tokenizer"), num_workers=0, pin_memory=False, **DATA
    )
    dm.setup("fit")
    loader = dm.train_dataloader()
    order = []
    for epoch in range(2):
        loader.set_epoch(epoch)
        order += [b.sample_ids for b in loader]
    return order


@pytest.mark.slow  # two `violet fit` processes: ~30 s on an idle 2-core machine
def test_sigterm_mid_epoch_then_resume_loses_and_repeats_nothing(bench: Path, tmp_path: Path) -> None:
    log = tmp_path / "seen.jsonl"
    config = write_config(bench, tmp_path, log)
    first = violet(config)
    deadline = time.time() + 120
    while len(lines(log)) < 3 and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert first.poll() is None, first.communicate()[0][-3000:]
    first.send_signal(signal.SIGTERM)
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 0, out[-3000:]
    assert "pre-empted by SIGTERM" in out
    head = lines(log)
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert 3 <= len(head) < 9  # stopped in the first epoch (9 batches: 4 shard + 5 map-style)

    second = violet(config, "--ckpt_path", "last")
    out, _ = second.communicate(timeout=180)
    assert second.returncode == 0, out[-3000:]
    both = lines(log)
    tail = both[len(head) :]
    assert tail[0]["step"] == head[-1]["step"] + 1  # continues at the same global step
    assert [r["step"] for r in both] == list(range(len(both)))
    expected = expected_order(bench)
    assert [r["ids"] for r in both] == expected  # same data order: 0 lost, 0 repeated
    assert [sum(len(r["ids"]) for r in both if r["epoch"] == e) for e in range(2)] == [18, 18]
