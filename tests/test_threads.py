"""Thread settings of `violet fit`: the training process takes the cores other jobs leave, at least one."""

import os

import pytest
import torch

from violetv2 import cli
from violetv2.cli import busy_cores, set_training_threads, training_threads


@pytest.mark.parametrize(
    ("cores", "busy", "workers", "expected"),
    [
        (2, 0.0, 2, 2),  # idle 2-core machine: both cores (workers mostly wait)
        (2, 0.4, 2, 2),
        (2, 0.8, 2, 1),  # about one core taken by other jobs
        (2, 9.0, 2, 1),  # heavily shared: never fewer than one
        (1, 0.0, 0, 1),
        (16, 0.0, 8, 12),  # from 4 cores up, each two workers keep a core
        (16, 6.0, 8, 10),
    ],
)
def test_training_threads(cores, busy, workers, expected):
    assert training_threads(cores, busy, workers) == expected


def test_busy_cores_is_within_the_machine():
    assert 0.0 <= busy_cores(0.05) <= (os.cpu_count() or 1) + 1e-6


def test_omp_waits_passively_unless_the_user_chose():
    assert os.environ.get("OMP_WAIT_POLICY")  # set by importing violetv2.cli, or by the user


def test_user_thread_counts_win(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("VIOLET_NUM_THREADS", "1")
        assert set_training_threads(2) is None and torch.get_num_threads() == 1
        monkeypatch.delenv("VIOLET_NUM_THREADS")
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        torch.set_num_threads(2)
        assert set_training_threads(2) is None and torch.get_num_threads() == 2
        monkeypatch.delenv("OMP_NUM_THREADS")
        monkeypatch.setattr(cli, "busy_cores", lambda: 0.0)
        monkeypatch.setattr(cli, "usable_cores", lambda: 1)
        assert set_training_threads(0) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
