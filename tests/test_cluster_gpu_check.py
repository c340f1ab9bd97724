"""bench/gpu_check.py --dry-run: the GPU check's code path on CPU with the tiny preset (JSON + markdown)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dry_run_writes_json_and_markdown(gpu_check, tmp_path: Path) -> None:
    result = gpu_check.main(["--dry-run", "--out", str(tmp_path), "--variants", "eager", "compile"])
    saved = json.loads((tmp_path / "gpu_check.json").read_text())
    assert saved["preset"] == "tiny" and saved["dry_run"] and saved == json.loads(json.dumps(result))
    assert [r["variant"] for r in saved["runs"]] == ["eager"]  # compile is left out on CPU
    for run in saved["runs"]:
        assert run["batch"] == 2 and run["clips_per_s"] > 0 and run["step_s"] > 0
        assert set(run["split_s"]) == {"teacher", "forward", "backward", "optimizer"}
        assert all(v >= 0 for v in run["split_s"].values()) and run["tflop_per_step"] > 0
    assert saved["data_s_per_batch"] > 0
    table = (tmp_path / "gpu_check.md").read_text()
    assert "| eager | 2 |" in table and "bf16 parity deviation" in table


def test_full_run_arguments_are_the_published_setting(gpu_check) -> None:
    args = gpu_check.parse_args(["--out", "/tmp/x"])
    assert (args.batch, args.frames, args.size) == (20, 4, 224)
    assert args.variants == ["eager", "ckpt", "compile", "ckpt+compile"]
