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
