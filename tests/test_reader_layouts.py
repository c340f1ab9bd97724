"""Every benchmark reader feeds its task's text layout: annotation lines -> records -> dataset -> batch.

Real annotation samples from ``../shared/reference/annotations`` where they exist; for the readers without a
sample (LSMDC, MSRVTT_data.json, MSVD captions, MSRVTT-MC) a few lines written in the documented layout.
Every record's video is a link to one tiny test clip (the video mapping is tested in test_readers).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from _videos import make_videos
from violetv2.data.batch import VideoTextBatch
from violetv2.data.datamodules import BENCHMARKS
from violetv2.data.dataset import VideoTextDataset, collate
from violetv2.data.layouts import IGNORE_INDEX
from violetv2.data.readers import READERS, read_annotations
from violetv2.data.records import Record
from violetv2.data.synthetic import PROMPT_WORDS, build_tokenizer
from violetv2.data.text import load_tokenizer

ANN = Path(__file__).resolve().parents[2] / "shared" / "reference" / "annotations"
CLIP = "3011_BLIND_DATING_00.02.27.640-00.02.30.113"
STAMPS = "00.02.27.640\t00.02.30.113\t00.02.27.640\t00.02.30.113"
WRITTEN = {
    "LSMDC16_annos_val.csv": f"{CLIP}\t{STAMPS}\tSOMEONE smiles at her.\n{CLIP}\t{STAMPS}\tHe nods.\n",
    "LSMDC16_multiple_choice_valid.csv": f"{CLIP}\t{STAMPS}\tSOMEONE smiles.\tHe runs.\tA car.\tRain.\tA dog.\n",
    "LSMDC16_FIB_val.csv": f"key\tvid_key\tblank_sentence\tanswer\nfib0\t{CLIP}\tSOMEONE _____ the door .\topens\n"
    f"fib1\t{CLIP}\the _____ at her .\tsmiles\n",
    "MSR_MC_test.csv": "key\tvid_key\ta1\ta2\ta3\ta4\ta5\tanswer\nmc0\tmsr7010\ta man sings\ta dog runs\tcars race"
    "\tit rains\tfood is cooked\t2\n",
    "MSRVTT_data.json": json.dumps(
        {
            "info": {},
            "videos": [{"video_id": f"video{i}", "split": "train"} for i in range(40)],
            "sentences": [
                {"caption": f"a man sings song {k}", "video_id": f"video{i}", "sen_id": 2 * i + k}
                for i in range(40)
                for k in range(2)
            ],
        }
    ),  # fmt: skip
    "AllVideoDescriptions.txt": "".join(f"# {i}\n" for i in range(7)) + "-4wsuPCjDBc_5_15 a squirrel eats\n",
    "video_corpus.csv": "VideoID,Start,End,WorkerID,Source,AnnotationTime,Language,Description\n"
    "mv89psg6zh4,33,46,1,clean,17,English,A bird in a sink.\n",
}

# (reader, file (real sample or WRITTEN), reader options, benchmark preset, task override)
CASES = [
    ("msrvtt_jsfusion_csv", "msrvtt/MSRVTT_JSFUSION_test.csv", {}, "msrvtt_ret", None),
    ("umt_ret_json", "msrvtt/msrvtt_ret_test1k.json", {}, "msrvtt_ret", None),
    ("umt_ret_json", "msrvtt/msrvtt_ret_test1k.json", {}, "msrvtt_cap", "captioning"),
    ("msrvtt_data_json", "MSRVTT_data.json", {"unfold": False}, "msrvtt_cap", "captioning"),
    ("msrvtt_split_csv", "msrvtt/MSRVTT_train.9k.csv", {"data_json": "MSRVTT_data.json"}, "msrvtt_ret", None),
    ("didemo_json", "didemo/test_data.json", {}, "didemo_ret", None),
    ("lsmdc_annos_csv", "LSMDC16_annos_val.csv", {}, "lsmdc_ret", None),
    ("msrvtt_mc_csv", "MSR_MC_test.csv", {}, "msrvtt_mc", None),
    ("lsmdc_mc_csv", "LSMDC16_multiple_choice_valid.csv", {}, "lsmdc_mc", None),
    ("tgif_action_csv", "tgif_qa/Test_action_question.csv", {}, "tgif_action", None),
    ("tgif_transition_csv", "tgif_qa/Test_transition_question.csv", {}, "tgif_transition", None),
    ("tgif_qa_csv", "tgif_qa/Test_transition_question.quoted_rows.csv", {}, "tgif_transition", None),
    ("violet_txt_json", "violet/txt_tgif-action.json", {"split": "test"}, "tgif_action", None),
    ("tgif_frameqa_csv", "tgif_qa/Test_frameqa_question.csv", {}, "tgif_frame", None),
    ("tgif_count_csv", "tgif_qa/Test_count_question.csv", {}, "tgif_frame", None),
    ("msvd_qa_json", "msvd_qa/test_qa.json", {}, "msvd_qa", None),
    ("msrvtt_qa_json", "msvd_qa/val_qa.json", {}, "msrvtt_qa", None),  # the same xudejing layout
    ("violet_txt_json", "violet/txt_msvd-qa.json", {"split": "test"}, "msvd_qa", None),
    ("violet_txt_json", "violet/txt_msrvtt-retrieval.json", {"split": "test"}, "msrvtt_ret", None),
    ("lsmdc_fib_csv", "LSMDC16_FIB_val.csv", {}, "lsmdc_fib", None),
    ("msvd_descriptions_txt", "AllVideoDescriptions.txt", {}, "msvd_cap", "captioning"),
    ("msvd_corpus_csv", "video_corpus.csv", {}, "msvd_cap", "captioning"),
    ("webvid_csv", "webvid/results_2M_val.csv", {"video_layout": "flat"}, None, None),
    ("webvid_csv", "webvid/results_10M_val.csv", {"video_layout": "flat"}, None, None),
    ("violet_txt_json", "violet/txt_webvid2.5m.json", {"split": "val"}, None, None),
    ("cc3m_tsv", "cc3m/Validation_GCC-1.1.0-Validation.tsv", {"id_offset": 3318333}, None, None),
    ("violet_txt_json", "violet/txt_cc3m.json", {"split": "val", "is_image": True}, None, None),
]  # fmt: skip
SAMPLES = 3


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("written")
    for name, text in WRITTEN.items():
        (folder / name).write_text(text)
    return folder


def _path(name: str, written: Path) -> Path:
    return written / name if name in WRITTEN else ANN / name


def _records(case: tuple, written: Path) -> list[Record]:
    reader, name, options, _, task = case
    options = {
        k: str(_path(v, written)) if k in ("data_json", "youtube_mapping") else v for k, v in options.items()
    }
    records = read_annotations(reader, _path(name, written), **options)[:SAMPLES]
    return [Record(**{**r.__dict__, "task": task}) for r in records] if task else records


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory, written: Path) -> tuple[Path, object]:
    """A folder where every record's video is a link to one tiny clip, and a tokenizer of all the texts."""
    if not ANN.is_dir():
        pytest.skip("../shared/reference/annotations is not beside this checkout")
    videos = make_videos(tmp_path_factory)
    folder = tmp_path_factory.mktemp("linked")
    corpus = [" ".join(PROMPT_WORDS)]
    for case in CASES:
        for r in _records(case, written):
            target = folder / (r.video if Path(r.video).suffix else f"{r.video}.mp4")
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                os.symlink(videos["png" if r.is_image else "sparse"], target)
            corpus += [r.text, *(r.options or []), r.answer or "", *r.captions]
    tok_dir = tmp_path_factory.mktemp("tokenizer")
    build_tokenizer(corpus, tok_dir, answers=PROMPT_WORDS, max_vocab=4000)
    return folder, load_tokenizer(str(tok_dir))


def _batch(case: tuple, media: tuple[Path, object], written: Path) -> tuple[VideoTextBatch, int, str]:
    folder, tok = media
    preset = BENCHMARKS.get(case[3], {}) if case[3] else {"max_text_len": 32}
    length = preset.get("max_text_len", 25)
    ds = VideoTextDataset(
        _records(case, written), folder, tok, num_frames=3, image_size=32, max_text_len=length, train=False,
        text_layout=preset.get("text_layout"),
    )  # fmt: skip
    return collate([ds[i] for i in range(len(ds))]), length, ds.layout_of(ds.records[0])


def test_every_reader_is_covered() -> None:
    assert {case[0] for case in CASES} == set(READERS)


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}:{Path(c[1]).name}" for c in CASES])
def test_reader_feeds_its_layout(case: tuple, media: tuple[Path, object], written: Path) -> None:
    batch, length, layout = _batch(case, media, written)
    tok = media[1]
    b = len(batch)
    assert batch.index.tolist() == list(range(b)) and batch.video.shape[1:] in (
        (3, 3, 32, 32),
        (1, 3, 32, 32),
    )
    assert torch.equal(batch.text_mask, (batch.text_ids != 0).long())
    assert (batch.text_ids[:, 0] == tok.cls_token_id).all()
    at_mask = batch.text_ids == tok.mask_token_id
    if layout == "caption":
        assert batch.text_ids.shape == (b, length) and batch.answer_ids is None and not at_mask.any()
        if case[4] == "captioning":
            assert all(isinstance(refs, list) and refs for refs in batch.answers)
    elif layout == "choice":
        assert batch.option_ids.shape == (b, 5, length) and batch.text_ids.shape == (b, length)
        assert ((batch.label >= 0) & (batch.label < 5)).all() and (
            batch.option_ids[:, :, 0] == tok.cls_token_id
        ).all()
    elif layout == "mc_prompt":
        assert batch.text_ids.shape == (b, length + 3) and (at_mask.sum(1) == 1).all()
        digits = tok.convert_tokens_to_ids([str(i) for i in range(5)])
        assert batch.answer_ids[at_mask].tolist() == [digits[i] for i in batch.label.tolist()]
    else:  # qa / fill_blank: the answer's id at the [MASK] when it is one vocabulary entry
        assert batch.text_ids.shape == (b, length + 5 if layout == "qa" else length)
        assert (at_mask.sum(1) == 1).all() and (batch.answer_ids[~at_mask] == IGNORE_INDEX).all()
        vocab = tok.get_vocab()
        expected = [vocab.get(a, IGNORE_INDEX) for a in batch.answers]
        assert batch.answer_ids[at_mask].tolist() == expected and any(e != IGNORE_INDEX for e in expected)
