"""The `violet` command: every YAML under configs/ parses, the recipe shows the published hyperparameters."""

from pathlib import Path

import pytest
import yaml

from violetv2.cli import main

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI.s args parameter")

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))
BASE = ROOT / "configs" / "pretrain" / "violetv2_base.yaml"
OVERLAYS = [p for p in CONFIGS if p.parent.name in ("mvm", "masking", "debug", "strategy")]


def test_there_are_configs():
    names = {p.relative_to(ROOT / "configs").as_posix() for p in CONFIGS}
    assert {"quickstart.yaml", "pretrain/violetv2_base.yaml", "debug/cpu.yaml"} <= names
    assert {
        f"mvm/{t}.yaml" for t in ("pixel", "hog", "depth", "flow", "vq", "sif", "clip", "vidswin")
    } <= names
    assert {f"masking/{m}.yaml" for m in ("random", "blockwise", "attended", "tube", "frame")} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(ROOT / "configs").as_posix())
def test_every_config_is_valid_yaml_and_parses(path, capsys):
    assert isinstance(yaml.safe_load(path.read_text()), dict)
    configs = (path,) if path.parent.name not in ("mvm", "masking", "debug", "strategy") else (BASE, path)
    with pytest.raises(SystemExit) as exit_:
        main(["fit", *sum((["--config", str(c)] for c in configs), []), "--print_config"])
    assert exit_.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"].startswith("violetv2.")


def test_print_config_of_the_base_recipe_shows_published_hyperparameters(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(BASE), "--print_config"])
    cfg = yaml.safe_load(capsys.readouterr().out)
    model, data, trainer = cfg["model"]["init_args"], cfg["data"]["init_args"], cfg["trainer"]
    assert model["preset"] == "violetv2-base" and model["mvm_targets"] == {"sif": 1.0}
    assert model["lr"] == 5e-5 and model["weight_decay"] == 1e-3 and model["betas"] == [0.9, 0.98]
    assert model["warmup_ratio"] == 0.1 and model["vtm_temperature"] == 0.05 and model["vtm_negatives"] == 3
    assert (
        model["mlm_prob"] == 0.15
        and model["mlm_mode"] == "mask"
        and model["masking"] == ["random", "blockwise"]
    )
    assert data["batch_size"] == 20 and data["num_frames"] == 4 and data["image_size"] == 224
    assert data["max_text_len"] == 32 and [s["format"] for s in data["train"]] == ["webvid_csv", "cc3m_tsv"]
    assert (
        trainer["max_epochs"] == 10 and trainer["precision"] == "bf16-mixed" and trainer["strategy"] == "ddp"
    )


def test_overlays_stack_last_wins(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(BASE), "--config", str(ROOT / "configs/mvm/hog.yaml"),
              "--config", str(ROOT / "configs/masking/tube.yaml"), "--print_config"])  # fmt: skip
    model = yaml.safe_load(capsys.readouterr().out)["model"]["init_args"]
    assert model["mvm_targets"] == {"hog": 1.0} and model["masking"] == ["tube"]


def test_help_lists_tools(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "fit" in out and "violet convert" in out and "violet synth" in out and "violet shard" in out


@pytest.mark.parametrize("tool", ["convert", "synth", "shard"])
def test_tool_help(tool, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([tool, "--help"])
    assert exit_.value.code == 0
    assert f"violet {tool}" in capsys.readouterr().out
