"""Two CPU processes under Lightning's DDP (gloo) train like one process on the same global batch.

Runs ``_ddp_pretrain.py`` twice (2 ranks x b = 4 dealt by Lightning's ``DistributedSampler``, then 1 process
x 8): the masks of the global batch are the same (row ``i`` of rank ``r`` of ``w`` draws from the stream of
global row ``r + w * i``, the row the sampler gave it), the mean of the ranks' losses equals the single
process's loss, and the weights after 3 SGD steps agree. Tolerances: losses
``rel=1e-6``; weights, per tensor, ``|delta_ddp - delta_single| <= 1e-4 * |delta_single| + 1e-9`` (norms of the
updates; the floor covers parameters whose exact gradient is 0, e.g. attention key biases, where both runs only
see rounding noise of ~1e-13). SGD rather than AdamW for the weights: Adam's normalisation turns that rounding
noise into full-size ``lr`` steps of either sign.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import violetv2

SCRIPT = Path(__file__).with_name("_ddp_pretrain.py")


def _run(devices: int, out: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(violetv2.__file__).resolve().parents[1]),
        "OMP_NUM_THREADS": "1",
    }
    env.pop("MASTER_PORT", None)  # Lightning picks a free one
    cmd = [sys.executable, str(SCRIPT), "--devices", str(devices), "--global-batch", "8", "--steps", "3",
           "--optimizer", "sgd", "--out", str(out)]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.mark.slow
def test_ddp_steps_match_one_process_on_the_global_batch(tmp_path: Path) -> None:
    _run(2, tmp_path / "ddp")
    _run(1, tmp_path / "single")
    rank0, rank1 = (torch.load(tmp_path / "ddp" / f"rank{r}.pt") for r in (0, 1))
    single = torch.load(tmp_path / "single" / "rank0.pt")
    assert rank0["world_size"] == rank1["world_size"] == 2 and single["world_size"] == 1
    assert sorted(single["masks"]) == sorted(rank0["masks"]) == [0, 1, 2]
    for step in range(3):
        assert not torch.equal(rank0["masks"][step], rank1["masks"][step])  # the ranks draw different masks
        dealt = torch.stack([rank0["masks"][step], rank1["masks"][step]], 1).flatten(
            0, 1
        )  # rows r0 r1 r0 ...
        assert torch.equal(single["masks"][step], dealt)
        ddp_loss = (rank0["losses"][step] + rank1["losses"][step]) / 2
        assert ddp_loss == pytest.approx(single["losses"][step], rel=1e-6), step
    assert all(torch.equal(v, rank0["initial"][k]) for k, v in single["initial"].items())
    for key, final in single["state_dict"].items():
        if not final.is_floating_point():
            continue
        delta_single = final - single["initial"][key]
        delta_ddp = rank0["state_dict"][key] - rank0["initial"][key]
        error = (delta_ddp - delta_single).norm().item()
        assert error <= 1e-4 * delta_single.norm().item() + 1e-9, (key, error, delta_single.norm().item())
    assert any((v - single["initial"][k]).abs().max() > 0 for k, v in single["state_dict"].items())
