"""Metrics across 2 gloo ranks (with a DistributedSampler-style padded duplicate) equal the 1-process result."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import violetv2.metrics.caption as caption
from violetv2.metrics import AccuracyMetric, CaptionMetrics, RetrievalMetrics

SCORES = torch.tensor(
    [
        [0.9, 0.9, 0.1, 0.0],
        [0.5, 0.2, 0.2, 0.7],
        [0.9, 0.8, 0.1, 0.8],
        [0.1, 0.3, 0.6, 0.2],
        [0.2, 0.1, 0.3, 0.4],
    ]
)
TEXT_TO_VIDEO = torch.tensor([0, 1, 1, 2, 3])
PREDS, TARGET = torch.tensor([1, 2, 3, 9, 5]), torch.tensor([1, 2, -100, 4, 5])
CAPTIONS = ["a man plays guitar", "a woman cooks", "dogs run", "a cartoon", "a boy plays a game"]
REFS = [
    ["a man is playing a guitar", "someone plays guitar"],
    ["a woman is cooking food", "a lady cooks"],
    ["two dogs are running", "dogs play"],
    ["a cartoon character talks"],
    ["a boy is playing a video game", "gameplay"],
]
# DistributedSampler(shuffle=False) over 5 samples and 2 ranks: rank 0 gets 0, 2, 4; rank 1 gets 1, 3 and 0 again.
SHARDS = ([0, 2, 4], [1, 3, 0])


def _metrics():
    return RetrievalMetrics(), AccuracyMetric(), CaptionMetrics(meteor=False, scale=1.0)


def _feed(metrics, samples, batch=2):
    retrieval, acc, cap = metrics
    videos = torch.arange(4)
    for start in range(0, len(samples), batch):
        idx = torch.tensor(samples[start : start + batch])
        target = TEXT_TO_VIDEO[idx][:, None] == videos[None, :]
        retrieval.update(SCORES[idx], idx, videos, target)
        acc.update(PREDS[idx], TARGET[idx], idx)
        cap.update([CAPTIONS[i] for i in idx], [REFS[i] for i in idx], idx)


def _results(metrics):
    retrieval, acc, cap = metrics
    out = {f"ret/{k}": v.item() for k, v in retrieval.compute().items()}
    out["acc"] = acc.compute().item()
    out.update({f"cap/{k}": v.item() for k, v in cap.compute().items()})
    return out


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        # METEOR is computed on rank 0 only and broadcast: every rank must report rank 0's value
        caption.meteor_score = lambda *args, **kwargs: 0.25 + rank
        metrics = _metrics()
        metrics[2].meteor = True
        _feed(metrics, SHARDS[rank])
        torch.save(_results(metrics), f"{out_dir}/{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # spawning two interpreters that import torch takes tens of seconds on a busy machine
def test_two_gloo_ranks_equal_one_process(tmp_path):
    single = _metrics()
    _feed(single, list(range(5)))
    want = _results(single)
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        got = torch.load(tmp_path / f"{rank}.pt")
        assert got.pop("cap/METEOR") == 0.25
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert abs(got[key] - value) < 1e-9, (rank, key, got[key], value)
    # the padded duplicate matters: counting sample 0 twice changes accuracy (3/6 instead of 2/5 correct)
    assert want["acc"] == 60.0
