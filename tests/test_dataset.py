"""VideoTextDataset, collate and tokenisation (violetv2.data.dataset / violetv2.data.text)."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from _videos import frame_index, make_tokenizer, make_videos
from violetv2.data import layouts
from violetv2.data.batch import VideoTextBatch
from violetv2.data.dataset import VideoTextDataset, collate, resolve_video
from violetv2.data.records import Record
from violetv2.data.text import (
    MAX_LEN_DOWNSTREAM,
    MAX_LEN_LONG,
    MAX_LEN_PRETRAIN,
    TASK_MAX_LEN,
    load_tokenizer,
    tokenize,
)

SIZE, FRAMES, MAX_LEN = 32, 3, 16


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_videos(tmp_path_factory)["sparse"].parent


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("tokenizer")
    make_tokenizer(directory)
    return load_tokenizer(str(directory))


def make_dataset(records: list[Record], root: Path, tokenizer, **kwargs) -> VideoTextDataset:
    kwargs = {"num_frames": FRAMES, "image_size": SIZE, "max_text_len": MAX_LEN, "train": False} | kwargs
    return VideoTextDataset(records, root, tokenizer, **kwargs)


# ------------------------------------------------------------------------------------------ text


def test_task_max_lengths() -> None:
    assert (MAX_LEN_PRETRAIN, MAX_LEN_DOWNSTREAM, MAX_LEN_LONG) == (32, 25, 100)
    assert TASK_MAX_LEN["didemo"] == TASK_MAX_LEN["tgif_action"] == TASK_MAX_LEN["tgif_transition"] == 100


def test_tokenize_pads_and_truncates(tokenizer) -> None:
    ids, mask = tokenize(tokenizer, ["a man is playing guitar", "a dog " * 30], 10)
    assert ids.shape == mask.shape == (2, 10) and ids.dtype == torch.long
    assert ids[0, 0] == tokenizer.cls_token_id and ids[0, 6] == tokenizer.sep_token_id
    assert mask[0].tolist() == [1] * 7 + [0] * 3 and (ids[0, 7:] == tokenizer.pad_token_id).all()
    assert mask[1].all() and ids[1, -1] == tokenizer.sep_token_id


def test_tokenize_pair_keeps_suffix(tokenizer) -> None:
    ids, _ = tokenize(tokenizer, ["what does the man do " * 10], 12, pairs=["answer : [MASK]"])
    assert tokenizer.mask_token_id in ids[0].tolist()


# ------------------------------------------------------------------------------------------ resolution


def test_resolve_video_names(root: Path) -> None:
    exts = (".mp4", ".mkv", ".png")
    assert resolve_video(root, "sparse", exts) == root / "sparse.mp4"  # no extension
    assert resolve_video(root, "clip.", exts) == root / "clip.mkv"  # DiDeMo bare dot
    assert resolve_video(root, "clip.mp4", exts) == root / "clip.mkv"  # stated extension absent
    assert resolve_video(root, "dense.mp4", exts) == root / "dense.mp4"
    assert resolve_video(root, "nothing", exts) is None


# ------------------------------------------------------------------------------------------ per task


def test_caption_sample_and_batch(root: Path, tokenizer) -> None:
    records = [Record("s0", "sparse", "a man is playing guitar"), Record("s1", "dense.mp4", "a dog runs")]
    ds = make_dataset(records, root, tokenizer)
    batch = collate([ds[0], ds[1]])
    assert isinstance(batch, VideoTextBatch)
    assert batch.video.shape == (2, FRAMES, 3, SIZE, SIZE) and batch.video.dtype == torch.float32
    assert batch.text_ids.shape == (2, MAX_LEN) and batch.sample_ids == ["s0", "s1"]
    assert batch.video_ids == ["sparse", "dense.mp4"] and batch.skipped == 0
    assert batch.option_ids is None and batch.answer_ids is None and batch.is_image.tolist() == [False, False]


def test_image_record_is_one_frame(root: Path, tokenizer) -> None:
    ds = make_dataset([Record("i", "image", "a red car", is_image=True)], root, tokenizer)
    assert ds[0]["video"].shape == (1, 1, 3, SIZE, SIZE) and ds[0]["is_image"]


@pytest.fixture(scope="module")
def prompt_tokenizer(tmp_path_factory: pytest.TempPathFactory):
    """A tokenizer that also knows the prompt words of mc_prompt / qa (``option``, the digits)."""
    words = "a man is playing guitar dog cat runs what the answer : ? . , does do option 0 1 2 3 4".split()
    return make_tokenizer(tmp_path_factory.mktemp("prompt_tokenizer"), words)


def test_multiple_choice_vtm_layout(root: Path, tokenizer) -> None:
    options = ["a man is playing guitar", "a dog runs", "a cat"]
    with_q = Record("m0", "sparse", "what does the man do ?", "multiple_choice", options, label=1)
    no_q = Record("m1", "dense", "", "multiple_choice", options[:2], label=0)
    ds = make_dataset([with_q, no_q], root, tokenizer)
    sample = ds[0]
    assert sample["option_ids"].shape == (3, MAX_LEN)
    expected = layouts.caption(tokenizer, "what does the man do ? a dog runs", MAX_LEN).ids
    assert torch.equal(sample["option_ids"][1], expected)  # question + " " + option, one [SEP]
    assert torch.equal(ds[1]["option_ids"][0], layouts.caption(tokenizer, options[0], MAX_LEN).ids)
    batch = collate([ds[0], ds[1]])
    assert batch.option_ids.shape == (2, 3, MAX_LEN) and batch.label.tolist() == [1, 0]
    assert batch.option_mask[1, 2].sum() == 0  # padded missing option
    assert batch.index.tolist() == [0, 1] and batch.index.dtype == torch.long


def test_multiple_choice_prompt_layout(root: Path, prompt_tokenizer) -> None:
    tok = prompt_tokenizer
    options = ["a man", "a dog", "a cat", "guitar", "runs"]
    record = Record("t0", "sparse", "what does the man do ?", "multiple_choice", options, label=3)
    sample = make_dataset([record], root, tok, text_layout="mc_prompt")[0]
    ids, labels = sample["text_ids"], sample["answer_ids"]
    assert ids.shape == (MAX_LEN + 3,) and "option_ids" not in sample and sample["label"] == 3
    at_mask = ids == tok.mask_token_id
    assert at_mask.sum() == 1 and labels[at_mask].item() == tok.convert_tokens_to_ids("3")
    assert (labels[~at_mask] == -100).all()
    assert ids[-3:].tolist() == [tok.mask_token_id, tok.sep_token_id, 0]  # options cut at L - 1 pieces


def test_shuffled_options_move_their_label_and_change_between_epochs(root: Path, tokenizer) -> None:
    options = ["a man", "a dog", "a cat", "guitar", "runs"]
    records = [Record(f"m{i}", "sparse", "", "multiple_choice", options, label=i % 5) for i in range(8)]

    def shown(ds: VideoTextDataset, epoch: int) -> list[list[int]]:
        ds.set_epoch(epoch)  # which option row holds each original option, per sample
        rows = []
        for i in range(len(records)):
            sample = ds[i]
            truth = [layouts.caption(tokenizer, o, MAX_LEN).ids for o in options]
            order = [
                next(k for k, t in enumerate(truth) if torch.equal(row, t)) for row in sample["option_ids"]
            ]
            assert order[sample["label"]] == records[i].label  # the label follows the right option
            rows.append(order)
        return rows

    plain = make_dataset(records, root, tokenizer, train=True)
    assert shown(plain, 0) == [list(range(5))] * 8  # off by default: the file's order
    shuffled = make_dataset(records, root, tokenizer, train=True, shuffle_options=True)
    first, again, second = shown(shuffled, 0), shown(shuffled, 0), shown(shuffled, 1)
    assert first == again and first != second  # a function of (seed, epoch, sample)
    assert sum(order != list(range(5)) for order in first) >= 6
    assert (
        shown(make_dataset(records, root, tokenizer, shuffle_options=True), 0) == [list(range(5))] * 8
    )  # eval


def test_shuffled_prompt_options_keep_the_answer_digit_on_the_answer(root: Path, prompt_tokenizer) -> None:
    tok, options = prompt_tokenizer, ["a man", "a dog", "a cat", "guitar", "runs"]
    record = Record("t0", "sparse", "what does the man do ?", "multiple_choice", options, label=3)
    ds = make_dataset(
        [record], root, tok, text_layout="mc_prompt", max_text_len=40, train=True, shuffle_options=True
    )
    labels = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        sample = ds[0]
        words = tok.decode(sample["text_ids"][sample["text_mask"].bool()], skip_special_tokens=False)
        shown = f"option {sample['label']} : {options[3]}"  # the right option sits where the label points
        assert shown in words, words
        digit = sample["answer_ids"][sample["text_ids"] == tok.mask_token_id].item()
        assert digit == tok.convert_tokens_to_ids(str(sample["label"]))
        labels.add(sample["label"])
    assert len(labels) > 1
    bad = Record("t1", "sparse", "what ?", "multiple_choice", options, label=7)
    with pytest.raises(ValueError, match="t1.*label 7 is not an index of its 5 options"):
        make_dataset([bad], root, tok, text_layout="mc_prompt", train=True, shuffle_options=True)[0]


@pytest.mark.parametrize(
    ("task", "text", "answer", "single"),
    [
        ("open_qa", "what is the man playing ?", "guitar", True),
        ("fill_blank", "a man is _____ guitar", "playing", True),
        ("open_qa", "what does he do ?", "skateboarding", False),  # three word pieces: never answerable
    ],
)
def test_masked_answer(root: Path, prompt_tokenizer, task: str, text: str, answer: str, single: bool) -> None:
    tok = prompt_tokenizer
    sample = make_dataset([Record("q", "sparse", text, task, answer=answer)], root, tok)[0]
    ids, targets = sample["text_ids"], sample["answer_ids"]
    at_mask = ids == tok.mask_token_id
    assert at_mask.sum() == 1
    assert targets[at_mask].item() == (tok.convert_tokens_to_ids(answer) if single else -100)
    assert (targets[~at_mask] == -100).all() and sample["answers"] == answer and "label" not in sample
    length = MAX_LEN + 5 if task == "open_qa" else MAX_LEN
    if task == "open_qa":
        answer_colon = tok.convert_tokens_to_ids(["answer", ":"])
        assert ids[at_mask.nonzero()[0, 0] - 2 :][:2].tolist() == answer_colon
    batch = collate([sample])
    assert batch.answer_ids.shape == batch.text_ids.shape == (1, length) and batch.answers == [answer]


def test_answer_vocabulary_labels(root: Path, prompt_tokenizer) -> None:
    answers = ["dog", "cat", "dog", "man", "cat", "dog", "guitar"]
    assert layouts.answer_vocabulary(answers) == ["dog", "cat", "man", "guitar"]
    assert layouts.answer_vocabulary([*answers, None], size=2) == ["dog", "cat"]
    records = [Record(f"q{i}", "sparse", "what is it ?", "open_qa", answer=a) for i, a in enumerate(answers)]
    ds = make_dataset(records, root, prompt_tokenizer, answer_vocab=["dog", "cat"], text_layout="caption")
    assert [ds[i]["label"] for i in range(4)] == [0, 1, 0, -100]
    assert ds[0]["text_ids"].shape == (MAX_LEN,) and "answer_ids" not in ds[0]  # question as str2txt
    with pytest.raises(ValueError, match="no training answers"):
        layouts.answer_vocabulary([None])


def test_paragraph_retrieval_trains_on_random_sentence_subsets(root: Path, tokenizer) -> None:
    caps = ["a man runs", "a dog runs", "a cat"]
    record = Record("p", "sparse", " ".join(caps), "retrieval", captions=caps)
    ds = make_dataset([record], root, tokenizer, train=True)
    texts = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        texts.add(tuple(ds[0]["text_ids"].tolist()))
    assert len(texts) > 2
    evaluation = make_dataset([record], root, tokenizer)[0]["text_ids"]
    assert torch.equal(evaluation, layouts.caption(tokenizer, " ".join(caps), MAX_LEN).ids)


def test_unknown_layout_and_mismatched_records_raise(root: Path, tokenizer) -> None:
    with pytest.raises(ValueError, match="unknown text_layout"):
        make_dataset([Record("a", "sparse", "x")], root, tokenizer, text_layout="bogus")
    with pytest.raises(ValueError, match="needs open_qa"):
        make_dataset([Record("a", "sparse", "x", source="f:3")], root, tokenizer, text_layout="qa")[0]


def test_captioning_references(root: Path, tokenizer) -> None:
    record = Record("c", "sparse", "a man is playing guitar", "captioning", captions=["a man", "a guitar"])
    batch = collate([make_dataset([record], root, tokenizer)[0]])
    assert batch.answers == [["a man", "a guitar"]] and batch.text_mask[0].sum() == 7


def test_bad_record_fields_raise_naming_the_record(root: Path, tokenizer) -> None:
    record = Record("bad", "sparse", "q", "multiple_choice", source="ann.json:7")
    with pytest.raises(ValueError, match="ann.json:7"):
        make_dataset([record], root, tokenizer)[0]


# ------------------------------------------------------------------------------------------ bad videos


def test_bad_videos_are_replaced_logged_once_and_counted(root: Path, tokenizer, caplog) -> None:
    names = ["zero.mp4", "notes", "truncated", "truncated_faststart", "does_not_exist", "sparse"]
    records = [Record(f"r{i}", name, "a dog") for i, name in enumerate(names)]
    ds = make_dataset(records, root, tokenizer)
    with caplog.at_level(logging.WARNING, logger="violetv2.data.dataset"):
        first = [ds[i]["sample_id"] for i in range(len(ds))]
        second = [ds[i]["sample_id"] for i in range(len(ds))]
    assert first == second == ["r5"] * 6  # deterministic replacement: the next readable sample
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 5  # once per bad file
    for name in ["zero.mp4", "notes.mp4", "truncated.mp4", "truncated_faststart.mp4", "does_not_exist"]:
        assert sum(name in w for w in warnings) == 1
    assert ds.skipped == 2 * (5 + 4 + 3 + 2 + 1)
    batch = collate([ds[0], ds[3], ds[5]])
    assert batch.skipped == 5 + 2 + 0 and batch.to("cpu").skipped == 7


def test_all_bad_raises(root: Path, tokenizer) -> None:
    ds = make_dataset([Record("a", "zero.mp4", "x"), Record("b", "missing", "x")], root, tokenizer)
    with pytest.raises(RuntimeError, match="every one of the 2 samples failed"):
        ds[0]


def test_dataloader_with_workers(root: Path, tokenizer) -> None:
    records = [Record(f"r{i}", n, "a man") for i, n in enumerate(["sparse", "zero.mp4", "dense", "mkv"])]
    ds = make_dataset(records, root, tokenizer)
    loader = DataLoader(ds, batch_size=2, num_workers=1, collate_fn=collate)
    batches = list(loader)
    assert [b.sample_ids for b in batches] == [["r0", "r2"], ["r2", "r0"]]
    assert sum(b.skipped for b in batches) == 2  # 'zero.mp4' skipped once, the missing 'mkv' once


# ------------------------------------------------------------------------------------------ sampling modes


def test_train_mode_is_seeded_per_epoch(root: Path, tokenizer) -> None:
    ds = make_dataset([Record("s", "sparse", "a man")], root, tokenizer, train=True, seed=1)
    a, b = ds[0]["video"], ds[0]["video"]
    assert torch.equal(a, b)
    draws = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        draws.add(ds[0]["video"].sum().item())
    assert len(draws) > 1


def test_multi_clip_collates_b_n_rows(root: Path, tokenizer) -> None:
    records = [Record("a", "sparse", "a man"), Record("b", "dense", "a dog")]
    ds = make_dataset(records, root, tokenizer, num_clips=2)
    batch = collate([ds[0], ds[1]])
    assert batch.video.shape == (4, FRAMES, 3, SIZE, SIZE) and batch.num_clips == 2
    assert batch.sample_ids == ["a", "a", "b", "b"]
    assert torch.equal(batch.text_ids[0], batch.text_ids[1]) and not torch.equal(
        batch.video[0], batch.video[1]
    )


def test_release_frame_sampling_and_all_clips(root: Path, tokenizer) -> None:
    records = [Record("a", "sparse", "a man"), Record("b", "clip.mkv", "a dog")]  # 30 and 20 frames
    ds = make_dataset(records, root, tokenizer)
    clip = ds.load_clip(records[0], random.Random(0))
    assert [frame_index(f[0].float().mean()) for f in clip[0]] == [0, 14, 29]  # round(14.5) = 14
    multi = make_dataset(records, root, tokenizer, num_clips="all")
    clips = multi.load_clip(records[0], random.Random(0))
    assert clips.shape[0] == 10  # ceil(30 / 3)
    assert [frame_index(f[0].float().mean()) for f in clips[1]] == [1, 11, 21]  # s = 1, 10 apart
    batch = collate([multi[0], multi[1]])
    assert (
        batch.num_clips == 10 and batch.video.shape[0] == 20 and batch.index.tolist() == [0] * 10 + [1] * 10
    )
    assert batch.clip_valid.tolist() == [True] * 10 + [True] * 7 + [False] * 3  # ceil(20 / 3) = 7 clips
    assert collate([multi[0]]).clip_valid is None


def test_collate_rejects_mixed_shapes(root: Path, tokenizer) -> None:
    records = [Record("v", "sparse", "a man"), Record("i", "image.png", "a car", is_image=True)]
    ds = make_dataset(records, root, tokenizer)
    with pytest.raises(ValueError, match="different shapes"):
        collate([ds[0], ds[1]])
