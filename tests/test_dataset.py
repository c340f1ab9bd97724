"""VideoTextDataset, collate and tokenisation (violetv2.data.dataset / violetv2.data.text)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from _videos import make_tokenizer, make_videos
from violetv2.data.batch import VideoTextBatch
from violetv2.data.dataset import VideoTextDataset, collate, resolve_video
from violetv2.data.records import Record
from violetv2.data.text import (
    MAX_LEN_DOWNSTREAM,
    MAX_LEN_LONG,
    MAX_LEN_PRETRAIN,
    TASK_MAX_LEN,
    fill_blank,
    load_tokenizer,
    tokenize,
    tokenize_around_mask,
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


def test_tokenize_around_mask_keeps_mask(tokenizer) -> None:
    text = "a man " * 20 + "[MASK] " + "a dog " * 20
    ids, mask = tokenize_around_mask(tokenizer, text, 10)
    assert ids.shape == (10,) and mask.all() and tokenizer.mask_token_id in ids.tolist()
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id


def test_fill_blank() -> None:
    assert fill_blank("a man _____ the guitar", "[MASK]") == "a man [MASK] the guitar"
    with pytest.raises(ValueError, match="exactly one blank"):
        fill_blank("no blank here", "[MASK]")


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


def test_multiple_choice(root: Path, tokenizer) -> None:
    options = ["a man is playing guitar", "a dog runs", "a cat"]
    with_q = Record("m0", "sparse", "what does the man do ?", "multiple_choice", options, label=1)
    no_q = Record("m1", "dense", "", "multiple_choice", options[:2], label=0)
    ds = make_dataset([with_q, no_q], root, tokenizer)
    sample = ds[0]
    assert sample["option_ids"].shape == (3, MAX_LEN)
    row = sample["option_ids"][1].tolist()
    assert row.count(tokenizer.sep_token_id) == 2  # question [SEP] option [SEP]
    assert ds[1]["option_ids"][0].tolist().count(tokenizer.sep_token_id) == 1  # option alone
    batch = collate([ds[0], ds[1]])
    assert batch.option_ids.shape == (2, 3, MAX_LEN) and batch.label.tolist() == [1, 0]
    assert batch.option_mask[1, 2].sum() == 0  # padded missing option


@pytest.mark.parametrize(
    ("task", "text", "answer", "pieces"),
    [
        ("open_qa", "what is the man playing ?", "guitar", 1),
        ("fill_blank", "a man is _____ guitar", "playing", 1),
        ("open_qa", "what does he do ?", "skateboarding", 3),
    ],
)
def test_masked_answer(root: Path, tokenizer, task: str, text: str, answer: str, pieces: int) -> None:
    ds = make_dataset([Record("q", "sparse", text, task, answer=answer)], root, tokenizer)
    sample = ds[0]
    ids, targets = sample["text_ids"], sample["answer_ids"]
    at_mask = ids == tokenizer.mask_token_id
    assert at_mask.sum() == 1
    first_piece = tokenizer(answer, add_special_tokens=False)["input_ids"][0]
    assert targets[at_mask].item() == first_piece
    assert (targets[~at_mask] == -100).all()
    assert sample["answers"] == answer and sample["answer_pieces"] == pieces
    if task == "open_qa":
        assert ids.tolist().count(tokenizer.sep_token_id) == 2  # question [SEP] answer : [MASK] [SEP]
    batch = collate([sample])
    assert batch.answer_ids.shape == (1, MAX_LEN) and batch.answers == [answer]


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


def test_collate_rejects_mixed_shapes(root: Path, tokenizer) -> None:
    records = [Record("v", "sparse", "a man"), Record("i", "image.png", "a car", is_image=True)]
    ds = make_dataset(records, root, tokenizer)
    with pytest.raises(ValueError, match="different shapes"):
        collate([ds[0], ds[1]])
