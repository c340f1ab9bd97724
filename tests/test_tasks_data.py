"""The DataModules feed the task modules: a few training steps and a test epoch per task family on a tiny
synthetic benchmark (fields, layouts and metrics fit together; no accuracy claim here)."""

import math
from pathlib import Path

import lightning as L
import pytest

from violetv2.data.datamodules import (
    CaptioningDataModule,
    MultipleChoiceDataModule,
    QADataModule,
    RetrievalDataModule,
)
from violetv2.data.synthetic import generate
from violetv2.tasks import (
    CaptioningModule,
    MultipleChoiceModule,
    OpenQAModule,
    PromptChoiceModule,
    RetrievalModule,
)

COMMON = {"batch_size": 2, "num_workers": 0, "pin_memory": False, "num_frames": 2, "image_size": 64}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("synthetic")
    generate(path, num_train=8, num_test=4, workers=0)
    return path


FAMILIES = {
    "retrieval": (RetrievalDataModule, {}, RetrievalModule, {}, "test/t2v_R@1"),
    "mc": (MultipleChoiceDataModule, {}, MultipleChoiceModule, {}, "test/acc"),
    "tgif": (MultipleChoiceDataModule, {"text_layout": "mc_prompt"}, PromptChoiceModule, {}, "test/acc"),
    "qa": (QADataModule, {}, OpenQAModule, {"task_token": True}, "test/acc"),
    "qa_classifier": (QADataModule, {"classifier": True}, OpenQAModule, {"head": "classifier"}, "test/acc"),
    "fib": (QADataModule, {"text_layout": "fill_blank"}, OpenQAModule, {}, "test/acc"),
    "caption": (
        CaptioningDataModule,
        {},
        CaptioningModule,
        {"meteor": False, "max_length": 6},
        "test/CIDEr-D",
    ),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_datamodule_feeds_task_module(root, family):
    dm_cls, dm_kw, cls, kw, key = FAMILIES[family]
    dm = dm_cls(synthetic=True, synthetic_root=str(root), synthetic_clips=8, **COMMON, **dm_kw)
    dm.prepare_data()
    if kw.get("head") == "classifier":
        kw = {**kw, "num_answers": dm.num_answers, "answer_vocab": dm.answer_vocab}
    module = cls(preset="tiny", tokenizer=str(root / "tokenizer"), config={"num_frames": 2}, lr=1e-3, **kw)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=2,
        limit_val_batches=0,
        limit_test_batches=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=dm)
    assert math.isfinite(float(trainer.callback_metrics["train/loss"]))
    metrics = trainer.test(module, datamodule=dm, verbose=False)[0]
    assert key in metrics and math.isfinite(metrics[key])
    out = trainer.predict(module, dataloaders=dm.test_dataloader()[0], return_predictions=True)
    records = [r for batch in out[:1] for r in batch]
    assert records and all(set(r) == {"id", "prediction", "score"} for r in records)
