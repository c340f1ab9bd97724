"""Pre-training report: steps run against max_steps, and a warning whenever training stopped before them."""

import re

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from _videos import make_tokenizer
from violetv2.callbacks.report import PretrainReport, stop_warning
from violetv2.data.batch import VideoTextBatch
from violetv2.tasks.pretrain import PretrainModule

RECALL = {"R@1": 10.0, "R@5": 30.0, "R@10": 50.0, "MdR": 9.0, "MnR": 12.0}
V2T = {"R@1": 20.0, "R@5": 40.0, "R@10": 60.0, "MdR": 4.0, "MnR": 6.0}


def _batch(seed: int) -> VideoTextBatch:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 40, (4, 10), generator=g)
    ids[:, 0], ids[:, 7], ids[:, 8:] = 2, 3, 0
    return VideoTextBatch(
        video=torch.randn(4, 2, 3, 64, 64, generator=g), text_ids=ids, text_mask=(ids != 0).long()
    )


class _Report(PretrainReport):
    """The report with held-out scoring replaced by fixed figures (scoring is covered by the metric tests)."""

    def retrieval(self, trainer, pl_module):
        return {**RECALL, "v2t": dict(V2T)}


class _StopAt(L.Callback):
    def __init__(self, step: int, interrupt: bool = False) -> None:
        self.step, self.interrupt = step, interrupt

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step >= self.step:
            if self.interrupt:
                raise KeyboardInterrupt
            trainer.should_stop = True


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok")
    make_tokenizer(path)
    return str(path)


def _fit(tokenizer_dir, tmp_path, num_batches=4, callbacks=(), **trainer_args):
    torch.manual_seed(0)
    module = PretrainModule(preset="tiny", mvm_targets={"hog": 1.0}, tokenizer=tokenizer_dir, lr=1e-3)
    report = _Report(window=2)
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, default_root_dir=tmp_path, callbacks=[report, *callbacks], **trainer_args,
    )  # fmt: skip
    trainer.fit(module, DataLoader([_batch(i) for i in range(num_batches)], batch_size=None))
    return report


def test_full_run_reports_steps_and_no_warning(tokenizer_dir, tmp_path, capsys):
    with _no_warning():
        report = _fit(tokenizer_dir, tmp_path, max_steps=3)
    out = capsys.readouterr().out
    assert (
        report.results["steps"] == 3
        and report.results["max_steps"] == 3
        and report.results["warning"] is None
    )
    assert "(3 of 3 steps in " in out and "steps/s" in out and "WARNING" not in out
    assert report.results["train_seconds"] > 0 and report.results["cpu_seconds"] > 0 and "(CPU " in out
    assert report.results["retrieval"]["R@5"] == 30.0 and report.results["retrieval"]["v2t"]["R@5"] == 40.0
    assert re.search(r"\nR@5 +30\.0% +40\.0% +5\.0%\n", out) and "text->video  video->text" in out


def test_epochs_ending_first_warn(tokenizer_dir, tmp_path, capsys):
    with pytest.warns(UserWarning, match="after 4 of max_steps=10 steps: max_epochs=1 was reached first"):
        report = _fit(tokenizer_dir, tmp_path, max_steps=10, max_epochs=1)
    assert report.results["steps"] == 4
    assert "WARNING: training stopped after 4 of max_steps=10 steps" in capsys.readouterr().out


def test_callback_stopping_early_warns(tokenizer_dir, tmp_path, capsys):
    with pytest.warns(UserWarning, match="after 2 of max_steps=4 steps: a callback stopped it"):
        _fit(tokenizer_dir, tmp_path, max_steps=4, callbacks=[_StopAt(2)])
    assert "WARNING" in capsys.readouterr().out


def test_time_bounded_run_warns(tokenizer_dir, tmp_path):
    with pytest.warns(UserWarning, match=r"bounded by a time limit \(max_time\), not by steps"):
        report = _fit(tokenizer_dir, tmp_path, max_epochs=1, max_time="00:00:10:00")
    assert report.results["max_steps"] is None


def test_interrupt_still_reports_with_warning(tokenizer_dir, tmp_path, capsys):
    with (
        pytest.raises(SystemExit),
        pytest.warns(UserWarning, match="after 2 of max_steps=4 steps: interrupted"),
    ):
        _fit(tokenizer_dir, tmp_path, max_steps=4, callbacks=[_StopAt(2, interrupt=True)])
    out = capsys.readouterr().out
    assert "(2 of 4 steps in " in out and "WARNING: training stopped after 2 of max_steps=4" in out


def test_stop_warning_of_an_untrained_trainer():
    trainer = L.Trainer(max_steps=5, logger=False, enable_progress_bar=False)
    assert "after 0 of max_steps=5 steps" in stop_warning(trainer)
    assert "bounded by epochs" in stop_warning(L.Trainer(max_epochs=2, logger=False))


class _no_warning:
    """Fail if a UserWarning from the report is issued inside the block."""

    def __enter__(self):
        import warnings

        self._catcher = warnings.catch_warnings(record=True)
        self._seen = self._catcher.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._catcher.__exit__(*exc)
        ours = [w for w in self._seen if "max_steps" in str(w.message) or "bounded by" in str(w.message)]
        assert not ours, [str(w.message) for w in ours]


def test_quickstart_is_bounded_by_steps():
    from pathlib import Path

    import yaml

    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml").read_text())
    trainer = cfg["trainer"]
    assert trainer["max_steps"] > 0 and "max_time" not in trainer
    assert trainer.get("max_epochs", -1) == -1  # epochs never end it first
    report = [c for c in trainer["callbacks"] if c["class_path"].endswith("PretrainReport")]
    assert report, "the quickstart prints the report"
