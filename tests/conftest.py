"""Shared test settings: CPU, deterministic, few threads."""

import os
from pathlib import Path

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


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """A tiny synthetic benchmark (4 + 4 clips at 64 px) for the inference tests."""
    from violetv2.data.synthetic import generate

    return generate(
        tmp_path_factory.mktemp("synth"), num_train=4, num_test=4, size=64, seconds=1.0, workers=0
    )


@pytest.fixture(scope="module")
def tokenizer_dir(bench, tmp_path_factory) -> str:
    """The benchmark's tokenizer plus the option digits 0-9 (the tiny benchmark's text has none)."""
    from transformers import BertTokenizerFast

    out = tmp_path_factory.mktemp("tokenizer")
    vocab = [v for v in (Path(bench.tokenizer) / "vocab.txt").read_text().split("\n") if v]
    vocab += [str(d) for d in range(10) if str(d) not in vocab]
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(str(out / "vocab.txt")).save_pretrained(str(out))
    return str(out)
