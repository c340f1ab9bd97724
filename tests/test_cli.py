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


DOWNSTREAM = ROOT / "configs" / "downstream"
BENCHMARK_NAMES = ["msrvtt_ret", "didemo_ret", "lsmdc_ret", "msrvtt_mc", "lsmdc_mc", "tgif_action",
                   "tgif_transition", "tgif_frame", "msrvtt_qa", "msvd_qa", "lsmdc_fib", "msrvtt_cap",
                   "msvd_cap"]  # fmt: skip
QUICKSTART_FAMILIES = ["retrieval", "multiple_choice", "prompt_choice", "open_qa", "captioning"]


def test_one_downstream_config_per_benchmark_and_one_quickstart_per_family():
    assert sorted(p.stem for p in DOWNSTREAM.glob("*.yaml")) == sorted(BENCHMARK_NAMES)
    assert sorted(p.stem for p in (ROOT / "configs" / "quickstart").glob("*.yaml")) == sorted(
        QUICKSTART_FAMILIES
    )


def _printed(capsys, *args: str) -> dict:
    with pytest.raises(SystemExit):
        main([*args, "--print_config"])
    return yaml.safe_load(capsys.readouterr().out)


# (benchmark, epochs, batch per GPU, text length, task class) as the release's _args files give them
PUBLISHED = [
    ("msrvtt_ret", 20, 8, 25, "RetrievalModule"),
    ("didemo_ret", 20, 8, 100, "RetrievalModule"),
    ("tgif_action", 60, 8, 100, "PromptChoiceModule"),
    ("tgif_transition", 10, 8, 100, "PromptChoiceModule"),
    ("msrvtt_qa", 20, 10, 25, "OpenQAModule"),
    ("lsmdc_fib", 10, 10, 25, "OpenQAModule"),
    ("msvd_cap", 20, 8, 25, "CaptioningModule"),
]


@pytest.mark.parametrize("name,epochs,batch,length,task", PUBLISHED, ids=[p[0] for p in PUBLISHED])
def test_downstream_configs_show_published_hyperparameters(capsys, name, epochs, batch, length, task):
    cfg = _printed(capsys, "fit", "--config", str(DOWNSTREAM / f"{name}.yaml"))
    model, data, trainer = cfg["model"]["init_args"], cfg["data"]["init_args"], cfg["trainer"]
    assert cfg["model"]["class_path"] == f"violetv2.tasks.{task}"
    assert model["preset"] == "violetv2-base" and model["lr"] == 2e-5 and model["weight_decay"] == 1e-3
    assert model["betas"] == [0.9, 0.98] and model["warmup_ratio"] == 0.1
    assert model["config"] == {"num_frames": 5, "gradient_checkpointing": True}
    assert model["init_checkpoint"] is None and data["benchmark"] == name
    assert data["num_frames"] == 5 and data["image_size"] == 224 and data["max_text_len"] == length
    assert data["batch_size"] == batch and data["tokenizer"] == "bert-base-uncased"
    assert trainer["devices"] == 4 and trainer["max_epochs"] == epochs and trainer["gradient_clip_val"] == 1.0
    assert trainer["precision"] == "bf16-mixed"
    assert data["num_clips"] == ("all" if task == "RetrievalModule" else 1)
    paths = [
        s[k] for split in ("train", "val", "test") for s in data[split] for k in ("annotations", "video_root")
    ]
    assert paths and all(p.startswith("SET_ME/") for p in paths)
    if name == "msrvtt_ret":
        assert model["temperature"] == 0.05


def test_init_checkpoint_is_set_on_the_command_line(capsys):
    config = str(DOWNSTREAM / "msrvtt_ret.yaml")
    cfg = _printed(capsys, "test", "--config", config, "--model.init_checkpoint", "release_msrvtt.pth")
    assert cfg["model"]["init_args"]["init_checkpoint"] == "release_msrvtt.pth"
