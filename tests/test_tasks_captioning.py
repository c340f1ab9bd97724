"""Captioning: masking rule, the published greedy loop (stop, pad, forced [SEP], confidence), beam search, the
prefix-cached decoder against a full seq2seq forward, evaluation and predictions."""

import math

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from _videos import make_tokenizer
from violetv2.data.batch import VideoTextBatch
from violetv2.models.decoding import fuse_text, prefix_cache
from violetv2.tasks import CaptioningModule
from violetv2.tasks import captioning as cap
from violetv2.tasks.downstream import VideoTokens

SPECIAL = {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
WORDS = "a man is playing guitar dog cat runs the woman red car".split()


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok")
    make_tokenizer(path, WORDS)
    return str(path)


@pytest.fixture(scope="module")
def module(tok):
    torch.manual_seed(0)
    return CaptioningModule(preset="tiny", tokenizer=tok, config={"num_frames": 2}, meteor=False).eval()


def _video(module, b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    clip = torch.randn(b, 2, 3, 64, 64, generator=g)
    with torch.no_grad():
        return module.encode(VideoTextBatch(clip, torch.ones(b, 3, dtype=torch.long), torch.ones(b, 3)))


def test_mask_caption_rule():
    ids = torch.tensor([[2, 7, 8, 4, 3, 0, 0]]).repeat(4000, 1)
    masked, labels = cap.mask_caption(ids, mask_token_id=4, pad_token_id=0, prob=0.15)
    chosen = labels != -100
    assert torch.equal(masked[chosen], torch.full_like(masked[chosen], 4))
    assert torch.equal(labels[chosen], ids[chosen]) and torch.equal(masked[~chosen], ids[~chosen])
    rate = chosen.float().mean(0)
    assert (rate[[0, 1, 2, 4]] - 0.15).abs().max() < 0.03  # [CLS] and [SEP] are maskable too
    assert rate[[3, 5, 6]].sum() == 0  # [MASK] and [PAD] never


class Scripted:
    """A fake decoding step: per sample, the token (and its probability) to emit at every step."""

    def __init__(self, plans, vocab=10):
        self.plans, self.vocab, self.calls = plans, vocab, []

    def __call__(self, ids):
        self.calls.append(ids.clone())
        step = ids.shape[1] - 1
        logits = torch.full((ids.shape[0], self.vocab), -10.0)
        for i, plan in enumerate(self.plans):
            token = plan[min(step, len(plan) - 1)]
            logits[i, token] = 5.0
        return logits


@pytest.fixture
def scripted(monkeypatch):
    def install(plans):
        stepper = Scripted(plans)
        monkeypatch.setattr(cap, "_stepper", lambda *a, **k: stepper)
        return stepper

    return install


def _logp_top(vocab=10):
    row = torch.full((vocab,), -10.0)
    row[0] = 5.0
    return row.log_softmax(0)[0].item()


def test_greedy_stops_pads_and_forces_sep(scripted, module):
    stepper = scripted([[7, 8, 3], [9]])  # sample 0 ends after 3 steps, sample 1 never does
    video = VideoTokens(torch.zeros(2, 5, 64), 1, (2, 2))
    out = cap.greedy_decode(module.model, video, SPECIAL, max_length=6)
    assert out.ids.tolist() == [[2, 7, 8, 3, 0, 0], [2, 9, 9, 9, 9, 3]]
    assert len(stepper.calls) == 5  # at most max_length - 1 steps
    assert [c.shape[1] for c in stepper.calls] == [1, 2, 3, 4, 5]
    top = _logp_top()
    assert torch.allclose(out.score, torch.tensor([top, top]), atol=1e-6)  # mean over own steps (3 and 5)
    stepper = scripted([[3], [7, 3]])  # everybody finishes early: stop, pad to the length
    out = cap.greedy_decode(module.model, video, SPECIAL, max_length=6)
    assert out.ids.tolist() == [[2, 3, 0, 0, 0, 0], [2, 7, 3, 0, 0, 0]] and len(stepper.calls) == 2


def test_beam_search_finds_the_better_caption(scripted, monkeypatch, module):
    # step 1: token 7 (p .55) or 8 (p .45); after 7 nothing good (best p .4), after 8 [SEP] is certain
    def step(ids):
        logits = torch.full((ids.shape[0], 10), -30.0)
        for i, row in enumerate(ids.tolist()):
            if len(row) == 1:
                logits[i, 7], logits[i, 8] = math.log(0.55), math.log(0.45)
            elif row[-1] == 7:
                logits[i, 3], logits[i, 6] = math.log(0.3), math.log(0.3)
                logits[i, 5] = math.log(0.4)
            else:
                logits[i, 3] = 0.0
        return logits

    monkeypatch.setattr(cap, "_stepper", lambda *a, **k: step)
    video = VideoTokens(torch.zeros(1, 5, 64), 1, (2, 2))
    greedy = cap.greedy_decode(module.model, video, SPECIAL, max_length=4)
    beam = cap.beam_search(module.model, video, SPECIAL, beam_size=2, max_length=4)
    assert greedy.ids[0, :2].tolist() == [2, 7]
    assert beam.ids.tolist() == [[2, 8, 3, 0]] and beam.score[0] > greedy.score[0]
    assert beam.score[0].item() == pytest.approx((math.log(0.45) + 0.0) / 2, abs=1e-5)


def test_beam_size_one_equals_greedy(module):
    video = _video(module, b=3)
    greedy = cap.greedy_decode(module.model, video, SPECIAL, max_length=8)
    beam = cap.beam_search(module.model, video, SPECIAL, beam_size=1, max_length=8)
    assert torch.equal(greedy.ids, beam.ids) and torch.allclose(greedy.score, beam.score, atol=1e-6)
    assert (greedy.ids[:, 0] == 2).all() and ((greedy.ids == 3).sum(1) == 1).all()


@pytest.mark.parametrize("task_token", [False, True])
def test_prefix_cached_decoder_equals_full_seq2seq(module, task_token):
    video = _video(module)
    task = module.model.task_token("cap") if task_token else None
    ids = torch.tensor([[2, 7, 8, 9, 4], [2, 10, 4, 0, 0]])
    with torch.no_grad():
        full = module.model.backbone.fuse(
            video.tokens,
            ids,
            (ids != 0).long(),
            frames=2,
            grid=video.grid,
            mode="seq2seq",
            task_embedding=task,
        )
        prefix = module.model.backbone.prefix_tokens(video.tokens, task)
        text = fuse_text(
            module.model.backbone.fusion,
            prefix_cache(module.model.backbone.fusion, prefix),
            module.model.backbone.text(ids),
        )
    assert torch.allclose(text, full.text, atol=1e-5)


def test_generate_eval_and_predict(module, tok):
    g = torch.Generator().manual_seed(1)
    batch = VideoTextBatch(
        torch.randn(2, 2, 3, 64, 64, generator=g),
        torch.tensor([[2, 5, 6, 3], [2, 7, 3, 0]]),
        torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]),
        video_ids=["v0", "v0"],
        sample_ids=["a", "b"],
        index=torch.tensor([0, 1]),
        answers=[["a man is playing guitar"], ["a dog runs"]],
    )
    captions, score = module.caption_batch(batch)
    assert len(captions) == 2 and all(isinstance(c, str) for c in captions) and (score < 0).all()
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    metrics = trainer.test(
        module, DataLoader([batch], batch_size=1, collate_fn=lambda x: x[0]), verbose=False
    )[0]
    assert {"test/BLEU-4", "test/CIDEr-D", "test/ROUGE-L"} <= set(metrics)
    out = module.predict_step(batch, 0)
    assert [r["id"] for r in out] == ["v0"] and out[0]["prediction"] == captions[0]  # one caption per video
    module.hparams.beam_size = 2
    try:
        beam_captions, _ = module.caption_batch(batch)
    finally:
        module.hparams.beam_size = 1
    assert len(beam_captions) == 2
