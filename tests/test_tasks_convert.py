"""Release downstream checkpoints -> task modules: the full-size key lists on `meta` (nothing dropped but index
buffers, `emb_task` carried), and small files with values through `init_checkpoint`."""

import pytest
import torch

from violetv2.convert import ConversionError, save_checkpoint
from violetv2.convert.release import export_release, release_conversion
from violetv2.tasks import (
    CaptioningModule,
    MultipleChoiceModule,
    OpenQAModule,
    PromptChoiceModule,
    RetrievalModule,
    VioletModule,
)

VTM_MODULES = [(RetrievalModule, {}), (MultipleChoiceModule, {})]
MLM_MODULES = [(PromptChoiceModule, {}), (OpenQAModule, {}), (CaptioningModule, {"meteor": False})]
HEAD_MODEL = {  # the models of violetv2_downstream_head_keys.tsv -> our task module
    "retrieval": (RetrievalModule, {}),
    "qamc (msrvtt/lsmdc-mc)": (MultipleChoiceModule, {}),
    "qamc_mlm_head (tgif-action/transition)": (PromptChoiceModule, {}),
    "qaoe_mlm_head (tgif-frame/msrvtt-qa/msvd-qa/lsmdc-fib)": (OpenQAModule, {}),
    "captioning": (CaptioningModule, {"meteor": False}),
}
ALLOWED_DROPS = {"enc_img.emb_odr", "fc_mtm.predictions.bias"}  # unused by the forward / the tied alias


def _rows(path, skip_header=False):
    with open(path) as f:
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    return rows[1:] if skip_header else rows


def _meta_sd(pairs):
    shape = lambda s: tuple(int(x) for x in s.strip("[]").split(",") if x.strip())  # noqa: E731
    return {name: torch.empty(shape(s), device="meta") for name, s in pairs}


def _check_loads(sd, cls, kwargs, name):
    conversion, layout, _ = release_conversion(sd, source_name=name)
    with torch.device("meta"):
        module = cls(preset="violetv2-base", **kwargs)
    ours = module.model.state_dict()
    assert set(conversion.state_dict) == set(ours), name
    assert all(tuple(v.shape) == tuple(ours[k].shape) for k, v in conversion.state_dict.items()), name
    buffers = [k for k in conversion.dropped if k.endswith(("position_ids", "relative_position_index"))]
    assert set(conversion.dropped) - set(buffers) <= ALLOWED_DROPS, name
    assert len(buffers) == 25, name
    if "emb_task" in sd:
        assert layout.has_task_embedding and "task_embedding" in conversion.state_dict
    return conversion, layout


@pytest.mark.parametrize("head, modules", [("vtmhead", VTM_MODULES), ("mlmhead", MLM_MODULES)])
def test_release_downstream_key_lists_load_into_task_modules(reference_dir, head, modules):
    rows = _rows(f"{reference_dir}/parity_downstream/violetv2_downstream_{head}_keys.tsv")
    assert len(rows) == {"vtmhead": 561, "mlmhead": 565}[head]
    for cls, kwargs in modules:
        _check_loads(_meta_sd(rows), cls, kwargs, f"{head} -> {cls.__name__}")


def test_downstream_head_key_list_loads_into_task_modules(reference_dir):
    trunk = [
        (n, s)
        for n, s in _rows(f"{reference_dir}/violetv2_state_dict_keys.tsv")
        if not n.startswith(("fc_mvm.", "feature_model.", "fc.", "fc_mtm."))
    ]
    heads: dict[str, list] = {}
    totals = {}
    for model, name, shape in _rows(f"{reference_dir}/violetv2_downstream_head_keys.tsv", skip_header=True):
        if name == "(total keys)":
            totals[model] = int(shape)
        else:
            heads.setdefault(model, []).append((name, shape))
    assert set(heads) == set(HEAD_MODEL)
    for model, keys in heads.items():
        sd = _meta_sd(trunk + keys)
        assert len(sd) == totals[model], model
        cls, kwargs = HEAD_MODEL[model]
        _check_loads(sd, cls, kwargs, model)


def test_qa_classifier_layout_on_meta(reference_dir):
    rows = _rows(f"{reference_dir}/parity_downstream/violetv2_downstream_vtmhead_keys.tsv")
    rows = [(n, {"fc.3.weight": "[1540, 1536]", "fc.3.bias": "[1540]"}.get(n, s)) for n, s in rows]
    conversion, layout = _check_loads(
        _meta_sd(rows), OpenQAModule, {"head": "classifier", "num_answers": 1540}, "VIOLET_QAOE (TGIF-Frame)"
    )
    assert layout.num_answers == 1540 and not layout.vtm and layout.fc_target == "answer_head"


def _tiny(cls, **kwargs):
    torch.manual_seed(0)
    return cls(preset="tiny", **kwargs).eval()


@pytest.mark.parametrize(
    "cls, kwargs",
    [*VTM_MODULES, *MLM_MODULES, (OpenQAModule, {"head": "classifier", "num_answers": 6})],
)
def test_release_file_init_checkpoint_round_trip(tmp_path, cls, kwargs):
    source = _tiny(cls, **kwargs)
    with torch.no_grad():
        if source.model.task_embedding is not None:
            source.model.task_embedding.add_(1.0)  # distinguishable from a fresh init
    path = tmp_path / "release.pth"
    exported = export_release(source.model)
    assert ("emb_task" in exported) == (source.model.task_embedding is not None)
    torch.save(exported, path)
    torch.manual_seed(1)
    loaded = cls(preset="tiny", init_checkpoint=str(path), **kwargs)
    theirs = loaded.model.state_dict()
    assert set(theirs) == set(source.model.state_dict())
    for k, v in source.model.state_dict().items():
        assert torch.equal(v, theirs[k]), k


def test_converted_downstream_checkpoint_restores(tmp_path):
    source = _tiny(OpenQAModule, head="classifier", num_answers=5)
    path = save_checkpoint(source.model, tmp_path / "qa.ckpt")
    restored = VioletModule.load_from_checkpoint(path)
    assert restored.model.answer_head.fc2.out_features == 5
    assert torch.equal(restored.model.answer_head.fc2.weight, source.model.answer_head.fc2.weight)
    prompt = _tiny(PromptChoiceModule)
    restored = VioletModule.load_from_checkpoint(save_checkpoint(prompt.model, tmp_path / "tgif.ckpt"))
    assert torch.equal(restored.model.task_embedding, prompt.model.task_embedding)


def test_classifier_size_mismatch_is_loud(tmp_path):
    source = _tiny(OpenQAModule, head="classifier", num_answers=6)
    path = tmp_path / "release.pth"
    torch.save(export_release(source.model), path)
    with pytest.raises(ConversionError, match="answer_head.fc2.weight"):
        OpenQAModule(preset="tiny", head="classifier", num_answers=7, init_checkpoint=str(path))
