"""Notebooks are stored without outputs and run top to bottom (their code cells, in one namespace)."""

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, tmp_path, monkeypatch):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(not c["outputs"] and c["execution_count"] is None for c in code), "strip outputs"
    monkeypatch.chdir(tmp_path)  # no trained checkpoint here: the notebook builds a fresh tiny model
    (tmp_path / "configs").mkdir()
    namespace: dict = {}
    for cell in code:
        exec(compile("".join(cell["source"]), f"{path.name}:{cell['id']}", "exec"), namespace)
    assert namespace["scores"].shape == (2, 8)
