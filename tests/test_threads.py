"""Thread settings of `violet fit`: a count from the machine's cores and the run's workers, never its load."""

import os
from types import SimpleNamespace

import pytest
import torch

from violetv2 import cli
from violetv2.cli import busy_cores, set_training_threads, training_threads


@pytest.mark.parametrize(
    ("cores", "workers", "expected"),
    [
        (2, 2, 2),  # 2-core machine: both cores (workers mostly wait)
        (1, 0, 1),
        (4, 8, 1),  # never fewer than one
        (16, 8, 12),  # from 4 cores up, each two workers keep a core
    ],
)
def test_training_threads(cores, workers, expected):
    assert training_threads(cores, workers) == expected


def test_the_thread_count_does_not_follow_the_load(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv("VIOLET_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(cli, "usable_cores", lambda: 2)
    try:
        for busy in (0.0, 1.0, 9.0):
            monkeypatch.setattr(cli, "busy_cores", lambda busy=busy: busy)
            assert set_training_threads(2) == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


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
        monkeypatch.setattr(cli, "usable_cores", lambda: 1)
        assert set_training_threads(0) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_busy_machine_gets_a_note_not_fewer_threads(monkeypatch, capsys):
    before = torch.get_num_threads()
    monkeypatch.delenv("VIOLET_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(cli, "usable_cores", lambda: 2)
    fit = SimpleNamespace(subcommand="fit", config={"fit": {"data": {"init_args": {"num_workers": 2}}}})
    try:
        for busy, note in ((0.0, "set VIOLET_NUM_THREADS to choose"), (1.5, "keep 1.5 cores busy")):
            monkeypatch.setattr(cli, "busy_cores", lambda busy=busy: busy)
            cli.VioletCLI._set_threads(fit)
            err = capsys.readouterr().err
            assert "2 training thread(s) on 2 cores" in err and note in err and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
