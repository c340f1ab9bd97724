"""Shared test settings: CPU, deterministic, few threads."""

import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

REFERENCE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "reference")


@pytest.fixture(scope="session")
def reference_dir() -> str:
    """``../shared/reference`` beside the checkout (skip when it is not there)."""
    if not os.path.isdir(REFERENCE):
        pytest.skip("../shared/reference is not beside this checkout")
    return REFERENCE


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """In-process ``violet fit`` calls choose the training thread count (``violetv2.cli``): give every test the
    suite's own count back, so results never depend on which tests ran before."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
