"""Checkpoints that travel: save_pretrained -> from_pretrained for every task class (checked in a fresh process
that imports only violetv2), Lightning .ckpt -> `violet export`, release files -> `violet convert DIR`,
`init_checkpoint=DIR`, and Hub names resolved from a local cache (offline)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from violetv2 import VioletModule
from violetv2.cli import main as cli_main
from violetv2.config import VioletConfig
from violetv2.convert.release import export_release, release_conversion
from violetv2.data.text import load_tokenizer
from violetv2.inference.pretrained import TASKS, _default_task, _resolve_class, read_config
from violetv2.models import VioletModel
from violetv2.tasks import (
    CaptioningModule,
    MultipleChoiceModule,
    OpenQAModule,
    PretrainModule,
    PromptChoiceModule,
    RetrievalModule,
)

# The same probe runs here and in the fresh process: every head's output through the inference methods.
PROBE = """
import torch

def probe(module):
    # weights, preprocessing and the output of the module's own task method on two uint8 clips
    g = torch.Generator().manual_seed(0)
    videos = [torch.randint(0, 256, (6, 3, 48, 80), dtype=torch.uint8, generator=g),
              torch.randint(0, 256, (5, 3, 64, 64), dtype=torch.uint8, generator=g)]
    out = {"class": type(module).__name__, "heads": module.heads}
    pre = module.preprocessing.to_dict()
    out["preprocessing"] = {k: v for k, v in pre.items() if k != "tokenizer"}
    out["weights"] = {k: v.clone() for k, v in module.state_dict().items()}
    quiet = {"progress": False}
    name = out["class"]
    if name == "CaptioningModule":
        out["caption"] = [(c.caption, c.score) for c in module.caption(videos, max_len=6, **quiet)]
    elif name in ("MultipleChoiceModule", "PromptChoiceModule"):
        mc = module.answer(videos, "what is it ?", options=["a red circle", "a square"], **quiet)
        out["mc"] = [(a.option, a.score) for a in mc]
    elif name == "OpenQAModule":
        out["qa"] = [(a.answer, a.score) for a in module.answer(videos, "what shape is it ?", **quiet)]
    else:
        out["retrieve"] = module.retrieve(["a red circle", "a blue square"], videos, **quiet).scores
    return out
"""

FRESH = """
import sys
import torch
torch.set_num_threads(2)
import violetv2
assert "violetv2.tasks.retrieval" not in sys.modules  # the saved class is found from config.json alone
exec(sys.argv[1])
out = {}
for path in sys.argv[3:]:
    module = violetv2.VioletModule.from_pretrained(path)
    out[path] = probe(module)
torch.save(out, sys.argv[2])
"""


def _probe(module):
    namespace: dict = {}
    exec(PROBE, namespace)
    return namespace["probe"](module)


def _assert_same(a, b, where):
    assert a.keys() == b.keys(), where
    for key in a:
        if key == "weights":
            assert a[key].keys() == b[key].keys(), where
            for name in a[key]:
                assert torch.equal(a[key][name], b[key][name]), f"{where}: {name}"
        elif isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), f"{where}: {key}"
        else:
            assert a[key] == b[key], f"{where}: {key}"


def _config(tokenizer_dir):
    vocab = len(load_tokenizer(tokenizer_dir))
    return {"dropout": 0.0, "attention_dropout": 0.0, "initializer_range": 0.1, "vocab_size": vocab}


def _modules(tokenizer_dir):
    common = {"preset": "tiny", "config": _config(tokenizer_dir)}
    tok = {"tokenizer": tokenizer_dir}
    return {
        "base": VioletModule(mvm_heads=["pixel"], **common),
        "pretrain": PretrainModule(mvm_targets={"hog": 1.0}, learned_mask_token=True, **tok, **common),
        "retrieval": RetrievalModule(eval_score="logit", **tok, **common),
        "multiple_choice": MultipleChoiceModule(**tok, **common),
        "prompt_choice": PromptChoiceModule(task_token=True, **tok, **common),
        "open_qa": OpenQAModule(**tok, **common),
        "classifier": OpenQAModule(
            head="classifier", num_answers=3, answer_vocab=["x", "y", "z"], **tok, **common
        ),
        "captioning": CaptioningModule(beam_size=2, task_token=True, **tok, **common),
    }


def test_round_trip_of_every_task_class_in_a_fresh_process(tokenizer_dir, tmp_path):
    torch.manual_seed(0)
    modules = _modules(tokenizer_dir)
    base = modules["base"]  # no tokenizer argument: the inference tokenizer is set in the preprocessing
    base.preprocessing = {**base.preprocessing.to_dict(), "tokenizer": tokenizer_dir, "num_clips": 2}
    with torch.no_grad():  # make the learned mask token and task tokens non-trivial
        modules["pretrain"].mask_token.normal_()
    expected = {}
    for name, module in modules.items():
        module.eval()
        path = module.save_pretrained(tmp_path / name)
        expected[str(path)] = _probe(module)
        config = read_config(path)
        assert config["class_path"] == f"{type(module).__module__}.{type(module).__qualname__}"
        assert (path / "model.safetensors").is_file() and (path / "README.md").is_file()
        assert config["preprocessing"]["tokenizer"] == "." and (path / "tokenizer_config.json").is_file()
    result = tmp_path / "fresh.pt"
    run = subprocess.run(
        [sys.executable, "-c", FRESH, PROBE, str(result), *expected],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    fresh = torch.load(result, weights_only=False)
    for path, want in expected.items():
        _assert_same(want, fresh[path], path)
    assert {fresh[p]["class"] for p in fresh} == {
        "VioletModule",
        "PretrainModule",
        "RetrievalModule",
        "MultipleChoiceModule",
        "PromptChoiceModule",
        "OpenQAModule",
        "CaptioningModule",
    }


def test_from_pretrained_checks_the_class_and_takes_overrides(tokenizer_dir, tmp_path):
    torch.manual_seed(0)
    path = RetrievalModule(
        preset="tiny", tokenizer=tokenizer_dir, config=_config(tokenizer_dir)
    ).save_pretrained(tmp_path / "ret")
    module = RetrievalModule.from_pretrained(path, lr=1e-5)
    assert module.hparams.lr == 1e-5 and not module.training
    with pytest.raises(TypeError, match="not a CaptioningModule"):
        CaptioningModule.from_pretrained(path)
    config = json.loads((path / "config.json").read_text())
    for class_path, error, message in [
        ("elsewhere.Model", ValueError, "only violetv2 modules are imported"),
        ("os.system", TypeError, "holds a os.system, which is not a VioletModule"),
    ]:
        config["class_path"] = class_path
        (path / "config.json").write_text(json.dumps(config))
        with pytest.raises(error, match=message):
            VioletModule.from_pretrained(path)
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        VioletModule.from_pretrained(tmp_path / "nothing-here")


def test_lightning_checkpoint_exports_with_the_data_preprocessing(bench, tokenizer_dir, tmp_path):
    """A .ckpt written by `fit` records the datamodule's preprocessing; `violet export` turns it into a
    directory that restores the same module and that `init_checkpoint=DIR` fine-tunes from."""
    import lightning as L

    from violetv2.data.datamodules import RetrievalDataModule

    data = RetrievalDataModule(
        synthetic=True,
        synthetic_root=str(tmp_path / "synth"),
        synthetic_clips=4,
        batch_size=2,
        num_workers=0,
        pin_memory=False,
        num_frames=3,
        image_size=64,
        max_text_len=20,
    )
    torch.manual_seed(0)
    module = RetrievalModule(preset="tiny", config=_config(tokenizer_dir), lr=1e-3)
    trainer = L.Trainer(
        max_steps=1,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, data)
    ckpt = tmp_path / "task.ckpt"
    trainer.save_checkpoint(ckpt)
    restored = VioletModule.from_pretrained(ckpt)
    pre = restored.preprocessing
    assert type(restored) is RetrievalModule
    assert (pre.num_frames, pre.image_size, pre.max_text_len) == (3, 64, 20)
    assert pre.tokenizer == str(Path(tmp_path / "synth" / "tokenizer"))
    out = tmp_path / "export"
    assert cli_main(["export", str(ckpt), str(out), "--num-clips", "2"]) == 0
    exported = VioletModule.from_pretrained(out)
    assert exported.preprocessing.num_clips == 2 and exported.preprocessing.num_frames == 3
    for k, v in module.state_dict().items():
        assert torch.equal(v, exported.state_dict()[k]), k
    # and back: a from_pretrained directory initialises a fine-tuning run
    fresh = CaptioningModule(preset="tiny", config=_config(tokenizer_dir), init_checkpoint=str(out))
    assert torch.equal(
        fresh.model.backbone.fusion.layers[0].query.weight,
        module.model.backbone.fusion.layers[0].query.weight,
    )


def _release_model(**heads):
    torch.manual_seed(2)
    model = VioletModel(VioletConfig.from_name("tiny"), **heads).eval()
    with torch.no_grad():
        if model.task_embedding is not None:
            model.task_embedding.normal_()
    return model


@pytest.mark.parametrize(
    ("heads", "task", "cls"),
    [
        ({"vtm": True, "mlm": False}, None, RetrievalModule),
        ({"vtm": False, "mlm": True, "task_embedding": True}, None, OpenQAModule),
        ({"vtm": False, "mlm": True, "task_embedding": True}, "captioning", CaptioningModule),
        ({"vtm": True, "mlm": True, "mvm": ("sif",)}, None, VioletModule),
    ],
)
def test_release_files_load_and_convert_to_directories(tokenizer_dir, tmp_path, heads, task, cls):
    model = _release_model(**heads)
    src = tmp_path / "release.pth"
    torch.save(export_release(model), src)
    loaded = VioletModule.from_pretrained(src, task=task, architecture=model.cfg, tokenizer=tokenizer_dir)
    assert type(loaded) is cls
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.model.state_dict()[k]), k
    args = [str(src), str(tmp_path / "out"), "--preset", "tiny", "--tokenizer", tokenizer_dir]
    assert cli_main(["convert", *args, *(["--task", task] if task else [])]) == 0
    converted = VioletModule.from_pretrained(tmp_path / "out")
    assert type(converted) is cls and converted.preprocessing.tokenizer == str(tmp_path / "out")
    _assert_same(_probe(loaded), _probe(converted), "converted")


def test_release_downstream_key_lists_map_to_task_modules_on_meta(reference_dir):
    """The full-size downstream release layouts (meta tensors) build the task module whose keys they fill."""
    rows = [line.rstrip("\n").split("\t") for line in open(f"{reference_dir}/violetv2_state_dict_keys.tsv")]
    base = [(n, s) for n, s in rows if not n.startswith(("fc_mvm.", "feature_model.", "fc.", "fc_mtm."))]
    heads: dict[str, list] = {}
    with open(f"{reference_dir}/violetv2_downstream_head_keys.tsv") as f:
        for i, line in enumerate(f):
            model_name, name, shape = line.rstrip("\n").split("\t")
            if i and name != "(total keys)":
                heads.setdefault(model_name, []).append((name, shape))

    def meta(pairs):
        return {
            n: torch.empty(tuple(int(x) for x in s.strip("[]").split(",") if x.strip()), device="meta")
            for n, s in pairs
        }

    seen = set()
    for model_name, keys in heads.items():
        conversion, layout, _ = release_conversion(meta(base + keys), source_name=model_name)
        task = _default_task(layout.vtm, layout.mlm, layout.num_answers)
        target = _resolve_class(VioletModule, TASKS[task], model_name)
        args = {"preset": "violetv2-base"}
        if layout.num_answers is not None:
            args.update(head="classifier", num_answers=layout.num_answers)
        with torch.device("meta"):
            module = target(**args)
        assert set(conversion.state_dict) == set(module.model.state_dict()), model_name
        seen.add(target.__name__)
    assert {"RetrievalModule", "OpenQAModule"} <= seen


def test_hub_names_resolve_from_the_local_cache(tokenizer_dir, tmp_path, monkeypatch):
    torch.manual_seed(0)
    module = OpenQAModule(preset="tiny", tokenizer=tokenizer_dir, config=_config(tokenizer_dir))
    snapshot = tmp_path / "hub" / "models--violet--tiny-qa" / "snapshots" / "0123abc"
    module.save_pretrained(snapshot)
    (tmp_path / "hub" / "models--violet--tiny-qa" / "refs").mkdir()
    (tmp_path / "hub" / "models--violet--tiny-qa" / "refs" / "main").write_text("0123abc")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = VioletModule.from_pretrained("violet/tiny-qa", cache_dir=tmp_path / "hub")
    assert type(loaded) is OpenQAModule and loaded.preprocessing.tokenizer == str(snapshot)
    _assert_same(_probe(module.eval()), _probe(loaded), "hub")
    with pytest.raises(FileNotFoundError, match="violet/missing: no such file or directory, and the Hub"):
        VioletModule.from_pretrained("violet/missing", cache_dir=tmp_path / "hub")
