"""model.answer / model.caption equal the task modules' own test_step / predict_step on the same clips (the
evaluation dataset's batches), for open-ended QA, fill-in-the-blank, both multiple-choice formulations and
captioning; every input kind gives the same answers (tiny preset, synthetic benchmark)."""

from __future__ import annotations

import pytest
import torch

from violetv2.data.dataset import VideoTextDataset, collate
from violetv2.data.readers import read_annotations
from violetv2.data.text import load_tokenizer
from violetv2.tasks import (
    CaptioningModule,
    MultipleChoiceModule,
    OpenQAModule,
    PretrainModule,
    PromptChoiceModule,
)


def _module(cls, tokenizer_dir, seed=0, **kwargs):
    torch.manual_seed(seed)
    vocab = len(load_tokenizer(tokenizer_dir))
    config = {"dropout": 0.0, "attention_dropout": 0.0, "initializer_range": 0.1, "vocab_size": vocab}
    return cls(preset="tiny", tokenizer=tokenizer_dir, config=config, **kwargs).eval()


def _data(bench, tokenizer_dir, fmt, path, **kwargs):
    records = read_annotations(fmt, str(path))
    data = VideoTextDataset(
        records,
        bench.videos,
        load_tokenizer(tokenizer_dir),
        num_frames=4,
        image_size=64,
        max_text_len=25,
        train=False,
        **kwargs,
    )
    batch = collate([data[i] for i in range(len(data))])
    paths = [data.resolve(r) for r in records]
    return records, batch, paths


def _test_accuracy(module, batch, name="test_acc"):
    module.accuracy[name].reset()
    with torch.no_grad():
        module.test_step(batch, 0)
    return float(module.accuracy[name].compute())


def _predict(module, batch):
    with torch.no_grad():
        return module.predict_step(batch, 0)


@pytest.mark.parametrize("num_clips", [1, 2])
def test_open_ended_answers_equal_test_and_predict_steps(bench, tokenizer_dir, num_clips):
    module = _module(OpenQAModule, tokenizer_dir)
    records, batch, paths = _data(
        bench, tokenizer_dir, "tgif_frameqa_csv", bench.frameqa_test, num_clips=num_clips
    )
    module.preprocessing = {**module.preprocessing.to_dict(), "num_clips": num_clips}
    answers = module.answer(paths, [r.text for r in records], batch_size=4, progress=False)
    expected = _predict(module, batch)
    assert [a.answer for a in answers] == [str(e["prediction"]) for e in expected]
    assert torch.allclose(
        torch.tensor([a.score for a in answers]), torch.tensor([e["score"] for e in expected])
    )
    correct = [a.answer == r.answer for a, r in zip(answers, records)]
    assert _test_accuracy(module, batch) == pytest.approx(100.0 * sum(correct) / len(correct))


def test_fill_in_the_blank_equals_the_task(bench, tokenizer_dir):
    module = _module(OpenQAModule, tokenizer_dir, seed=3)
    records, batch, paths = _data(bench, tokenizer_dir, "lsmdc_fib_csv", bench.fib_test)
    answers = module.answer(paths, [r.text for r in records], progress=False)
    expected = _predict(module, batch)
    assert [a.answer for a in answers] == [str(e["prediction"]) for e in expected]
    assert [a.score for a in answers] == pytest.approx([e["score"] for e in expected], abs=1e-6)


@pytest.mark.parametrize("cls", [MultipleChoiceModule, PromptChoiceModule])
def test_multiple_choice_equals_the_task(bench, tokenizer_dir, cls):
    module = _module(cls, tokenizer_dir)
    layout = {"text_layout": "mc_prompt"} if cls is PromptChoiceModule else {}
    records, batch, paths = _data(bench, tokenizer_dir, "tgif_action_csv", bench.action_test, **layout)
    questions, options = [r.text for r in records], [r.options for r in records]
    answers = module.answer(paths, questions, options=options, progress=False)
    expected = _predict(module, batch)
    assert [a.option for a in answers] == [e["prediction"] for e in expected]
    assert [a.answer for a in answers] == [o[a.option] for a, o in zip(answers, options)]
    assert [a.score for a in answers] == pytest.approx([e["score"] for e in expected], abs=1e-6)
    correct = [a.option == r.label for a, r in zip(answers, records)]
    assert _test_accuracy(module, batch) == pytest.approx(100.0 * sum(correct) / len(correct))


@pytest.mark.parametrize("beam_size", [1, 2])
def test_captions_equal_the_task(bench, tokenizer_dir, beam_size):
    module = _module(CaptioningModule, tokenizer_dir, beam_size=beam_size, max_length=12)
    records, batch, paths = _data(bench, tokenizer_dir, "umt_ret_json", bench.ret_test)
    captions = module.caption(paths, beam_size=beam_size, max_len=12, progress=False)
    with torch.no_grad():
        expected, score = module.caption_batch(batch)
    assert [c.caption for c in captions] == expected
    assert [c.score for c in captions] == pytest.approx(score.tolist(), abs=1e-6)
    assert [c.video for c in captions] == [str(p) for p in paths]
    # other settings than the module's own: a view with them, same weights
    short = module.caption(paths[:1], max_len=4, progress=False)
    assert len(module.tokenizer(short[0].caption, add_special_tokens=False)["input_ids"]) <= 2


def test_answers_from_every_input_kind(bench, tokenizer_dir):
    import av

    module = _module(OpenQAModule, tokenizer_dir)
    records, _, paths = _data(bench, tokenizer_dir, "tgif_frameqa_csv", bench.frameqa_test)
    path = paths[0]
    with av.open(str(path)) as c:
        frames = torch.stack([torch.from_numpy(f.to_ndarray(format="rgb24")) for f in c.decode(video=0)])
    kinds = [path, str(path), path.read_bytes(), frames.permute(0, 3, 1, 2).contiguous()]
    answers = module.answer(kinds, records[0].text, progress=False)
    assert [a.video for a in answers] == [str(path), str(path), "<bytes #2>", "<tensor #3>"]
    assert len({a.answer for a in answers}) == 1
    assert [a.score for a in answers[1:3]] == [answers[0].score] * 2
    assert answers[3].score == pytest.approx(answers[0].score, abs=1e-4)  # resized by torch, not the decoder


def test_zero_shot_methods_on_a_pretraining_module(bench, tokenizer_dir):
    """A pre-training checkpoint answers and captions through task views sharing its weights."""
    module = _module(PretrainModule, tokenizer_dir, mvm_targets={"hog": 1.0})
    records, _, paths = _data(bench, tokenizer_dir, "tgif_action_csv", bench.action_test)
    mc = module.answer(paths[:2], records[0].text, options=records[0].options, progress=False)
    assert isinstance(module.task_view("multiple_choice"), MultipleChoiceModule)
    assert mc[0].answer in records[0].options
    caps = module.caption(paths[:2], max_len=6, progress=False)
    view = module.task_view("captioning", beam_size=1, max_length=6)
    assert view.model is module.model and len(caps) == 2
    open_ = module.answer(paths[:1], "what shape is it ?", progress=False)
    assert open_[0].answer in load_tokenizer(tokenizer_dir).get_vocab()


def test_bad_files_are_reported_for_answers_and_captions(bench, tokenizer_dir, tmp_path):
    module = _module(CaptioningModule, tokenizer_dir)
    _, _, paths = _data(bench, tokenizer_dir, "umt_ret_json", bench.ret_test)
    bad = tmp_path / "bad.gif"
    bad.write_bytes(b"GIF89a broken")
    caps = module.caption([paths[0], bad, paths[1]], progress=False)
    assert [c.video for c in caps] == [str(paths[0]), str(paths[1])]
    assert [(f.video, f.index) for f in caps.failures] == [(str(bad), 1)]
    qa = _module(OpenQAModule, tokenizer_dir)
    answers = qa.answer([bad, paths[2]], ["what shape ?", "what colour ?"], progress=False)
    assert [a.question for a in answers] == ["what colour ?"] and len(answers.failures) == 1


def test_answer_classifier_equals_the_task(bench, tokenizer_dir):
    records = read_annotations("tgif_frameqa_csv", str(bench.frameqa_test))
    vocab = sorted({r.answer for r in records})[:3]
    module = _module(OpenQAModule, tokenizer_dir, head="classifier", num_answers=3, answer_vocab=vocab)
    records, batch, paths = _data(
        bench, tokenizer_dir, "tgif_frameqa_csv", bench.frameqa_test, answer_vocab=vocab
    )
    answers = module.answer(paths, [r.text for r in records], progress=False)
    expected = _predict(module, batch)
    assert [a.answer for a in answers] == [e["prediction"] for e in expected] and set(vocab) >= {
        a.answer for a in answers
    }
    assert [a.score for a in answers] == pytest.approx([e["score"] for e in expected], abs=1e-6)
    correct = [a.answer == r.answer for a, r in zip(answers, records)]
    assert _test_accuracy(module, batch) == pytest.approx(100.0 * sum(correct) / len(correct))
