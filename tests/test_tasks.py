"""Downstream task modules on the tiny preset with hand-made batches: losses and gradients, evaluation through a
Trainer (metrics checked against direct computations), predictions, multi-clip reduction, the task token."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from _videos import make_tokenizer
from violetv2.data.batch import VideoTextBatch
from violetv2.metrics import retrieval_metrics
from violetv2.models.fusion import seq2seq_mask
from violetv2.tasks import (
    CaptioningModule,
    MultipleChoiceModule,
    OpenQAModule,
    PromptChoiceModule,
    RetrievalModule,
)
from violetv2.tasks.downstream import average_clips, mask_positions
from violetv2.tasks.multiple_choice import release_option_score

PAD, CLS, SEP, MASK = 0, 2, 3, 4
WORDS = "a man is playing guitar dog cat runs what the answer : ? . , woman 0 1 2 3 4 red car".split()


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok")
    make_tokenizer(path, WORDS)
    return str(path)


def _make(cls, tok, **kwargs):
    torch.manual_seed(0)
    return cls(preset="tiny", tokenizer=tok, lr=1e-3, config={"num_frames": 2}, **kwargs)


def _text(b, length, g, mask_at=None):
    ids = torch.randint(5, 28, (b, length), generator=g)
    ids[:, 0] = CLS
    ends = torch.randint(length // 2, length, (b,), generator=g)
    for i, e in enumerate(ends.tolist()):
        ids[i, e] = SEP
        ids[i, e + 1 :] = PAD
        if mask_at is not None:
            ids[i, min(mask_at, e - 1)] = MASK
    return ids, (ids != PAD).long()


def _batch(b=4, seed=0, clips=1, **fields):
    g = torch.Generator().manual_seed(seed)
    ids, mask = fields.pop("text", None) or _text(b, 10, g)
    video = torch.randn(b * clips, 2, 3, 64, 64, generator=g)
    rep = {k: v.repeat_interleave(clips, 0) if isinstance(v, torch.Tensor) else v for k, v in fields.items()}
    return VideoTextBatch(
        video,
        ids.repeat_interleave(clips, 0),
        mask.repeat_interleave(clips, 0),
        num_clips=clips,
        index=torch.arange(b).repeat_interleave(clips),
        sample_ids=[f"s{i}" for i in range(b) for _ in range(clips)],
        **rep,
    )


def _mc_batch(b=4, o=3, seed=0, clips=1):
    g = torch.Generator().manual_seed(seed)
    ids, mask = _text(b * o, 8, g)
    ids, mask = ids.view(b, o, 8), mask.view(b, o, 8)
    mask[0, -1] = 0  # an all-padding option
    ids[0, -1] = 0
    label = torch.tensor([0, 1, 2, 1][:b])
    return _batch(b, seed, clips, option_ids=ids, option_mask=mask, label=label)


def _prompt_batch(b=4, seed=0, clips=1):
    g = torch.Generator().manual_seed(seed)
    ids, mask = _text(b, 12, g, mask_at=6)
    label = torch.tensor([0, 1, 2, 3][:b])
    return _batch(b, seed, clips, text=(ids, mask), label=label)


def _qa_batch(b=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids, mask = _text(b, 10, g, mask_at=4)
    answers = torch.full_like(ids, -100)
    pos = mask_positions(ids, MASK)
    answers[torch.arange(b), pos] = torch.tensor([10, 11, 12, 13][:b])
    answers[-1, pos[-1]] = -100  # an answer the vocabulary cannot produce: always wrong
    return _batch(b, seed, text=(ids, mask), answer_ids=answers, label=torch.tensor([0, 1, 2, -100][:b]))


def _caption_batch(b=4, seed=0):
    return _batch(b, seed, answers=[["a man is playing guitar"], ["a dog runs", "the dog runs"]] * (b // 2))


CASES = {
    "retrieval": (RetrievalModule, {}, lambda: _batch(video_ids=[f"v{i}" for i in range(4)])),
    "mc": (MultipleChoiceModule, {}, _mc_batch),
    "prompt": (PromptChoiceModule, {}, _prompt_batch),
    "prompt_tt": (PromptChoiceModule, {"task_token": True}, _prompt_batch),
    "qa": (OpenQAModule, {}, _qa_batch),
    "qa_tt": (OpenQAModule, {"task_token": True}, _qa_batch),
    "qa_classifier": (OpenQAModule, {"head": "classifier", "num_answers": 7}, _qa_batch),
    "caption": (CaptioningModule, {"mask_prob": 0.5}, _caption_batch),
    "caption_tt": (CaptioningModule, {"mask_prob": 0.5, "task_token": True}, _caption_batch),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_training_step_finite_loss_and_gradients(tok, case):
    cls, kwargs, make_batch = CASES[case]
    module = _make(cls, tok, **kwargs).train()
    with pytest.warns(UserWarning, match="self.log"):  # no Trainer attached: logging is skipped
        loss = module.training_step(make_batch(), 0)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss > 0
    loss.backward()
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert module.model.backbone.fusion.layers[0].query.weight.grad.abs().sum() > 0
    if kwargs.get("task_token"):
        assert (
            module.model.task_embedding.grad[module.model.task_embedding.grad.abs().sum(1) > 0].shape[0] == 1
        )


def _trainer():
    return L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def _loader(batches):
    return DataLoader(batches, batch_size=1, collate_fn=lambda x: x[0])


def _accuracy(pred, target):
    return 100.0 * ((pred == target) & (target != -100)).double().mean().item()


def test_multiple_choice_eval_and_predict(tok):
    module = _make(MultipleChoiceModule, tok).eval()
    batches = [_mc_batch(seed=0), _mc_batch(seed=1)]
    batches[1].index = batches[1].index + 4
    with torch.no_grad():
        logits = [module.forward_batch(b) for b in batches]
    assert logits[0][0, -1] == float("-inf") and torch.isfinite(logits[0][:, :-1]).all()
    metrics = _trainer().test(module, _loader(batches + [batches[0]]), verbose=False)[0]  # a duplicate pass
    pred, label = torch.cat([x.argmax(1) for x in logits]), torch.cat([b.label for b in batches])
    assert metrics["test/acc"] == pytest.approx(_accuracy(pred, label))
    out = module.predict_step(batches[0], 0)
    assert [r["id"] for r in out] == ["s0", "s1", "s2", "s3"]
    assert [r["prediction"] for r in out] == logits[0].argmax(1).tolist()
    assert all(0 < r["score"] <= 1 for r in out)


def test_prompt_choice_digits_release_score_and_eval(tok):
    module = _make(PromptChoiceModule, tok, num_options=4)
    assert module.digit_ids == [module.tokenizer.convert_tokens_to_ids(str(i)) for i in range(4)]
    logits = torch.tensor([[1.0, 2.0, 3.0, 0.5], [-1.0, 0.2, -0.5, -2.0]])
    score = release_option_score(logits)
    assert score[0].argmax() == 2 and score[1].argmax() == 3  # negative sum: the smallest logit wins
    batch = _prompt_batch()
    with torch.no_grad():
        mask_logits, pos = module.eval().forward_batch(batch)
    answer, label = module.targets(batch, pos)
    assert torch.equal(label, batch.label) and torch.equal(
        answer, torch.tensor(module.digit_ids)[batch.label]
    )
    metrics = _trainer().validate(module, _loader([batch]), verbose=False)[0]
    pred = mask_logits[:, module.digit_ids].argmax(1)
    assert metrics["val/acc"] == pytest.approx(_accuracy(pred, batch.label))
    module.hparams.option_score = "release_sum"
    release = _trainer().validate(module, _loader([batch]), verbose=False)[0]
    pred = release_option_score(mask_logits[:, module.digit_ids]).argmax(1)
    assert release["val/acc"] == pytest.approx(_accuracy(pred, batch.label))


@pytest.mark.parametrize("head", ["mlm", "classifier"])
def test_open_qa_accuracy_over_every_question(tok, head):
    kwargs = {"head": head, "num_answers": 7} if head == "classifier" else {}
    module = _make(OpenQAModule, tok, **kwargs).eval()
    batch = _qa_batch()
    with torch.no_grad():
        logits, target = module.forward_batch(batch)
    assert target[-1] == -100 and logits.shape == (4, 7 if head == "classifier" else 1024)
    metrics = _trainer().test(module, _loader([batch]), verbose=False)[0]
    assert metrics["test/acc"] == pytest.approx(_accuracy(logits.argmax(1), target))
    top5 = (logits.topk(5, 1).indices == target[:, None]).any(1) & (target != -100)
    assert metrics["test/acc_top5"] == pytest.approx(100.0 * top5.double().mean().item())
    out = module.predict_step(batch, 0)
    assert len(out) == 4 and all(set(r) == {"id", "prediction", "score"} for r in out)
    # rig the head to always answer one class: right on the 3 questions with that answer, wrong on the -100 one
    final = module.model.answer_head.fc2 if head == "classifier" else module.model.mlm_head.decoder
    with torch.no_grad():
        final.weight.zero_()
        final.bias.zero_()
        final.bias[5] = 5.0
    batch.label = torch.tensor([5, 5, 5, -100])
    batch.answer_ids = torch.where(batch.answer_ids > 0, 5, batch.answer_ids)
    rigged = _trainer().test(module, _loader([batch]), verbose=False)[0]
    assert rigged["test/acc"] == pytest.approx(75.0) and rigged["test/acc_top5"] == pytest.approx(75.0)


def test_retrieval_all_pairs_eval_several_captions_and_clips(tok):
    module = _make(RetrievalModule, tok).eval()
    # 6 texts over 4 videos (v0 and v2 have two captions each), two clips per video, 3 batches
    vids = ["v0", "v1", "v0", "v2", "v3", "v2"]
    g = torch.Generator().manual_seed(3)
    clips = {v: torch.randn(2, 2, 3, 64, 64, generator=g) for v in sorted(set(vids))}
    ids, mask = _text(6, 10, g)
    batches = []
    for rows in ([0, 1], [2, 3], [4, 5], [0, 1]):  # the last repeats the first (a padded sampler)
        video = torch.cat([clips[vids[r]] for r in rows])
        batches.append(
            VideoTextBatch(
                video,
                ids[rows].repeat_interleave(2, 0),
                mask[rows].repeat_interleave(2, 0),
                video_ids=[vids[r] for r in rows for _ in range(2)],
                index=torch.tensor(rows).repeat_interleave(2),
                num_clips=2,
            )
        )
    metrics = _trainer().test(module, _loader(batches), verbose=False)[0]
    with torch.no_grad():  # independently: each video's clips encoded separately, tokens averaged
        backbone = module.model.backbone
        names = sorted(clips)
        tokens = torch.stack([backbone.encode_video(clips[v]).mean(0) for v in names])
        fused = backbone.fuse(
            tokens.repeat_interleave(6, 0), ids.repeat(4, 1), mask.repeat(4, 1), frames=2, grid=(2, 2)
        )
        scores = module.model.vtm_logits(fused).view(4, 6).t().sigmoid()
    expected = retrieval_metrics(scores, torch.tensor([names.index(v) for v in vids]))
    assert set(expected) == {k.removeprefix("test/") for k in metrics}
    for k, v in expected.items():
        assert metrics[f"test/{k}"] == pytest.approx(v), k
    module.hparams.pair_batch = 5  # chunking does not change the scores
    module.cache_batch(batches[0])
    module.cache_batch(batches[1])
    chunked, video_ids, positive = module.all_pair_scores()
    assert video_ids == ["v0", "v1", "v2"] and positive.tolist() == [0, 1, 0, 2]
    assert torch.allclose(chunked, scores[:4, :3], atol=1e-6)


def test_retrieval_training_uses_all_pairs(tok):
    module = _make(RetrievalModule, tok)
    batch = _batch(video_ids=[f"v{i}" for i in range(4)])
    with torch.no_grad():
        video = module.eval().encode(batch)
        logits = module.pair_logits(video, batch.text_ids, batch.text_mask)
        single = module.model.vtm_logits(
            module.fuse(video.select(slice(2, 3)), batch.text_ids[1:2], batch.text_mask[1:2])
        )
    assert logits.shape == (4, 4) and torch.allclose(logits[2, 1], single[0], atol=1e-6)


def test_multi_clip_tokens_are_averaged(tok):
    module = _make(MultipleChoiceModule, tok).eval()
    batch = _mc_batch(b=2, clips=3)
    with torch.no_grad():
        video = module.encode(batch)
        separate = module.model.backbone.encode_video(batch.video).view(2, 3, *video.tokens.shape[1:]).mean(1)
        logits = module.forward_batch(batch)
    assert video.tokens.shape[0] == 2 and torch.allclose(video.tokens, separate, atol=1e-6)
    assert logits.shape == (2, 3)
    assert torch.equal(average_clips(torch.ones(4, 2, 3), 1), torch.ones(4, 2, 3))
    with pytest.raises(ValueError, match="multiple of num_clips"):
        average_clips(torch.ones(5, 2, 3), 2)


def test_average_clips_leaves_out_padding_clips():
    # video 0 has 3 real clips; video 1 has 1 real clip padded with 2 copies (num_clips="all" in one batch)
    tokens = torch.arange(6, dtype=torch.float32).view(6, 1, 1).expand(6, 2, 3)
    valid = torch.tensor([True, True, True, True, False, False])
    mean = average_clips(tokens, 3, valid)
    assert torch.equal(mean[0], torch.full((2, 3), 1.0)) and torch.equal(mean[1], torch.full((2, 3), 3.0))
    assert not torch.equal(
        average_clips(tokens, 3)[1], mean[1]
    )  # the unweighted mean would count the padding


def test_task_token_sits_between_video_and_text(tok):
    module = _make(OpenQAModule, tok, task_token=True).eval()
    backbone, model = module.model.backbone, module.model
    batch = _qa_batch(b=2)
    with torch.no_grad():
        video = module.encode(batch)
        fused = module.fuse(video, batch.text_ids, batch.text_mask)
        # the token is the raw table row: a fusion with zero layers returns the inputs
        layers = backbone.fusion.layers
        backbone.fusion.layers = torch.nn.ModuleList()
        raw = module.fuse(video, batch.text_ids, batch.text_mask)
        backbone.fusion.layers = layers
    nv = video.tokens.shape[1]
    assert fused.prefix == 1 and fused.text_start == nv + 1
    assert fused.hidden.shape[1] == nv + 1 + batch.text_ids.shape[1] and fused.text.shape[1] == 10
    assert torch.equal(raw.hidden[:, nv], model.task_embedding[2].expand(2, -1))
    assert torch.equal(raw.after_video[:, 0], model.task_embedding[2].expand(2, -1))
    # row 2 only matters: another row changes the output, the others do not enter
    with torch.no_grad():
        before = fused.text.clone()
        model.task_embedding[0] += 1.0
        same = module.fuse(video, batch.text_ids, batch.text_mask).text
        model.task_embedding[2] += 1.0
        changed = module.fuse(video, batch.text_ids, batch.text_mask).text
    assert torch.allclose(same, before) and not torch.allclose(changed, before, atol=1e-3)
    with pytest.raises(ValueError, match="no task token"):
        _make(RetrievalModule, tok, task_token=True)


def test_seq2seq_task_column_visible_to_every_row():
    prefix = torch.ones(1, 3, dtype=torch.long)  # 2 video tokens + the task token
    mask = seq2seq_mask(prefix, torch.ones(1, 4, dtype=torch.long))[0, 0]
    assert mask[:, :3].all()  # video, task and text rows see video + task
    assert not mask[:3, 3:].any()  # video and task rows see no text
    assert torch.equal(mask[3:, 3:], torch.ones(4, 4, dtype=torch.bool).tril())


def test_mask_positions_need_exactly_one_mask():
    ids = torch.tensor([[2, 5, 4, 3], [2, 4, 5, 3]])
    assert mask_positions(ids, 4).tolist() == [2, 1]
    with pytest.raises(ValueError, match=r"rows \[0\].*exactly one"):
        mask_positions(torch.tensor([[2, 4, 4, 3], [2, 4, 5, 3]]), 4)
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        mask_positions(torch.tensor([[2, 4, 5, 3], [2, 5, 5, 3]]), 4)
    assert mask_positions(torch.tensor([[2, 4, 5, 3], [2, 5, 5, 3]]), 4, allow_missing=True).tolist() == [
        1,
        -1,
    ]


def test_fill_blank_truncated_away_counts_as_wrong(tok):
    module = _make(OpenQAModule, tok).eval()
    batch = _qa_batch()
    row = batch.text_ids[1]
    batch.answer_ids[1] = -100
    batch.text_ids[1] = torch.where(row == MASK, 7, row)  # the blank was cut off with the text's end
    with torch.no_grad():
        logits, target = module.forward_batch(batch)
    assert target[1] == -100 and target[0] != -100
    metrics = _trainer().test(module, _loader([batch]), verbose=False)[0]
    assert metrics["test/acc"] == pytest.approx(_accuracy(logits.argmax(1), target))


def test_trained_task_module_checkpoint_restores_its_class(tok, tmp_path):
    from violetv2 import VioletModule

    module = _make(PromptChoiceModule, tok, task_token=True, option_score="release_sum")
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, _loader([_prompt_batch()]))
    path = tmp_path / "tgif.ckpt"
    trainer.save_checkpoint(path)
    restored = VioletModule.load_from_checkpoint(path)
    assert type(restored) is PromptChoiceModule
    assert restored.hparams.task_token and restored.hparams.option_score == "release_sum"
    for k, v in module.state_dict().items():
        assert torch.equal(v, restored.state_dict()[k]), k


@pytest.mark.parametrize("cls", [OpenQAModule, RetrievalModule])
def test_a_second_evaluation_source_is_a_clear_error(tok, cls):
    # metrics de-duplicate by dataset position: a second source would silently drop samples
    module = _make(cls, tok).eval()
    batch = _qa_batch(b=2)
    batch.video_ids = ["v0", "v1"]
    with torch.no_grad():
        module.test_step(batch, 0)  # the first source is accepted
        with pytest.raises(ValueError, match="one test source at a time.*dataloader_idx=1"):
            module.test_step(batch, 0, dataloader_idx=1)
