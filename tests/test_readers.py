"""Annotation readers on the real published samples (and small files written in the published layouts)."""

from __future__ import annotations

import base64
import json
import pickle
from pathlib import Path

import pytest

from violetv2.data.readers import (
    CC3M_TRAIN_SIZE,
    READERS,
    AnnotationError,
    TsvFrameStore,
    parse_iso8601_duration,
    read_annotations,
    read_cc3m_tsv,
    read_didemo_json,
    read_lsmdc_annos_csv,
    read_lsmdc_fib_csv,
    read_lsmdc_mc_csv,
    read_msrvtt_data_json,
    read_msrvtt_jsfusion_csv,
    read_msrvtt_mc_csv,
    read_msrvtt_qa_json,
    read_msrvtt_split_csv,
    read_msvd_corpus_csv,
    read_msvd_descriptions_txt,
    read_msvd_qa_json,
    read_tgif_qa_csv,
    read_umt_ret_json,
    read_video_list,
    read_violet_txt_json,
    read_webvid_csv,
    read_youtube_mapping,
)

ANN = Path(__file__).resolve().parents[2] / "shared" / "reference" / "annotations"
pytestmark = pytest.mark.skipif(not ANN.is_dir(), reason="reference annotation samples not present")


def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


# ------------------------------------------------------------------------------------------------ WebVid
def test_webvid_10m_multiline_crlf_caption_and_line_numbers() -> None:
    recs = read_webvid_csv(ANN / "webvid/results_10M_val.csv")
    assert len(recs) == 30  # 30 records although the file has 32 physical lines
    rec = recs[18]
    assert rec.sample_id == "8824387" and "\r" not in rec.text and "\n" not in rec.text
    assert rec.text.endswith("video shot in late 2013.")
    assert rec.source.endswith(":20") and recs[19].source.endswith(":22")  # record 19 spans lines 20-21
    assert recs[15].text == (
        "Kruger national park / south africa , video of animals in kruger national park , taken by drone camera"
    )
    assert recs[0].video == "095201_095250/1023443014.mp4" and recs[0].task == "caption"


def test_webvid_2m_column_order_and_flat_layout() -> None:
    recs = read_annotations("webvid_csv", ANN / "webvid/results_2M_val.csv", video_layout="flat")
    assert len(recs) == 9
    assert recs[0].sample_id == "1053841541" and recs[0].video == "1053841541.mp4"
    assert recs[0].text.startswith("Travel blogger shoot a story")
    assert any(r.text == "Moroccan flag waving in the wind in medieval town essaouira, morocco" for r in recs)


def test_webvid_non_ascii_spaces_and_bad_duration(tmp_path: Path) -> None:
    head = "videoid,contentUrl,duration,page_dir,name\n"
    good = _write(tmp_path, "ok.csv", head + '1,u,PT00H01M05S,001_050," , konigsplatz – munich "\n')
    assert read_webvid_csv(good)[0].text == ", konigsplatz – munich"
    bad = _write(tmp_path, "bad.csv", head + "1,u,PT00H00M05S,p,a\n2,u,30 seconds,p,b\n")
    with pytest.raises(AnnotationError, match=r"bad\.csv, line 3: not an ISO-8601 duration"):
        read_webvid_csv(bad)


def test_iso8601_duration() -> None:
    assert parse_iso8601_duration("PT00H00M30S") == 30.0
    assert parse_iso8601_duration("PT01H02M03S") == 3723.0
    assert parse_iso8601_duration("PT12.5S") == 12.5
    for bad in ("", "PT", "30", "PT1X"):
        with pytest.raises(ValueError):
            parse_iso8601_duration(bad)


# -------------------------------------------------------------------------------------------------- CC3M
def test_cc3m_ids_match_violet_txt_json() -> None:
    recs = read_cc3m_tsv(ANN / "cc3m/Validation_GCC-1.1.0-Validation.tsv", id_offset=CC3M_TRAIN_SIZE)
    violet = json.loads((ANN / "violet/txt_cc3m.json").read_text())["val"]
    assert len(recs) == 30 and all(r.is_image for r in recs)
    assert recs[0].sample_id == "03318333" and recs[0].video == "03318333.jpg"
    matched = [r for r in recs if r.sample_id in violet]
    assert len(matched) > 20 and all(violet[r.sample_id][0] == r.text for r in matched)


def test_cc3m_image_map_and_errors(tmp_path: Path) -> None:
    path = _write(tmp_path, "cc.tsv", 'a "quoted" cap\thttp://x/1.jpg\nb\thttp://x/2.jpg\n')
    recs = read_cc3m_tsv(path, image_map={"00000000": "img/a.jpg", "http://x/2.jpg": "img/b.jpg"})
    assert [r.video for r in recs] == ["img/a.jpg", "img/b.jpg"] and recs[0].text == 'a "quoted" cap'
    with pytest.raises(AnnotationError, match=r"cc\.tsv, line 2: image 00000001"):
        read_cc3m_tsv(path, image_map={"00000000": "a.jpg"})
    assert [r.sample_id for r in read_cc3m_tsv(path, image_map={"00000001": "b"}, skip_unmapped=True)] == [
        "00000001"
    ]
    odd = read_cc3m_tsv(
        _write(tmp_path, "odd.tsv", "a\u2028b\x0cc\tu1\nd\tu2\n")
    )  # only LF/CRLF/CR end lines
    assert [(r.sample_id, r.text) for r in odd] == [("00000000", "a b c"), ("00000001", "d")]
    bad = _write(tmp_path, "bad.tsv", "a\tu\nb\tu\textra\n")
    with pytest.raises(
        AnnotationError, match=r"bad\.tsv, line 2: expected 2 '\\t'-separated fields, found 3"
    ):
        read_cc3m_tsv(bad)


# ------------------------------------------------------------------------------------------------ MSRVTT
def _msrvtt_data_json(tmp_path: Path) -> Path:
    data = {
        "info": {"year": "2016"},
        "videos": [
            {"video_id": f"video{i}", "category": 1, "url": "u", "start time": 0.0, "end time": 9.0,
             "split": "train" if i < 2 else "test", "id": i}
            for i in range(3)
        ],
        "sentences": [
            {"caption": "a man sings", "video_id": "video1", "sen_id": 0},
            {"caption": "a cat runs", "video_id": "video0", "sen_id": 1},
            {"caption": "someone sings  a song", "video_id": "video1", "sen_id": 2},
            {"caption": "a test video", "video_id": "video2", "sen_id": 3},
        ],
    }  # fmt: skip
    return _write(tmp_path, "MSRVTT_data.json", json.dumps(data))


def test_msrvtt_jsfusion_test_csv() -> None:
    recs = read_msrvtt_jsfusion_csv(ANN / "msrvtt/MSRVTT_JSFUSION_test.csv")
    assert len(recs) == 30 and recs[0].task == "retrieval"
    assert (recs[0].sample_id, recs[0].video, recs[0].text) == (
        "ret0",
        "video9770",
        "a person is connecting something to system",
    )


def test_msrvtt_train_list_joined_with_data_json(tmp_path: Path) -> None:
    data = _msrvtt_data_json(tmp_path)
    ids = _write(tmp_path, "MSRVTT_train.2.csv", "video_id\nvideo1\nvideo0\n")
    recs = read_msrvtt_split_csv(ids, data_json=data)
    assert [(r.sample_id, r.text) for r in recs] == [
        ("video1#0", "a man sings"), ("video1#2", "someone sings a song"), ("video0#1", "a cat runs")
    ]  # fmt: skip
    grouped = read_msrvtt_split_csv(ids, data_json=data, unfold=False)
    assert grouped[0].captions == ["a man sings", "someone sings a song"] and len(grouped) == 2
    assert [r.video for r in read_msrvtt_data_json(data, split="test")] == ["video2"]
    with pytest.raises(AnnotationError, match="MSRVTT_data.json: video 'video3' has no sentences"):
        read_msrvtt_split_csv(_write(tmp_path, "x.csv", "video_id\nvideo3\n"), data_json=data)
    sentences = [{"caption": f"caption {i}", "video_id": f"video{i}", "sen_id": i} for i in range(40)]
    full = _write(tmp_path, "full.json", json.dumps({"info": {}, "videos": [], "sentences": sentences}))
    real = read_annotations("msrvtt_split_csv", ANN / "msrvtt/MSRVTT_train.9k.csv", data_json=full)
    assert [r.video for r in real] == [f"video{i}" for i in range(30)]  # the real 9k list's first 30 ids


def test_umt_ret_json_string_and_list_captions(tmp_path: Path) -> None:
    recs = read_umt_ret_json(ANN / "msrvtt/msrvtt_ret_test1k.json")
    assert len(recs) == 30 and recs[0].video == "video9770.mp4" and recs[0].captions == [recs[0].text]
    jsf = read_msrvtt_jsfusion_csv(ANN / "msrvtt/MSRVTT_JSFUSION_test.csv")
    assert [r.text for r in recs] == [r.text for r in jsf]  # same order as the JSFusion csv
    path = _write(
        tmp_path, "ret.json", json.dumps([{"video": "v.mp4", "caption": ["a", "b"], "duration": 3.0}])
    )
    assert [r.sample_id for r in read_umt_ret_json(path)] == ["0#0", "0#1"]
    assert read_umt_ret_json(path, unfold=False)[0].captions == ["a", "b"]


def test_ce_split_lists(tmp_path: Path) -> None:
    ids = read_video_list(ANN / "splits_ce/msrvtt/val_list_full.txt")
    assert len(ids) == 30 and ids[0] == "video6513"
    didemo = read_video_list(ANN / "splits_ce/didemo/test_list.txt")
    assert "10052357@N03_7585070382_5762149bfc." in didemo  # bare trailing '.' kept
    assert read_video_list(_write(tmp_path, "l.txt", "video1\nvideo2")) == ["video1", "video2"]  # no final \n
    with pytest.raises(AnnotationError, match=r"l2\.txt, line 3: duplicate id 'video1'"):
        read_video_list(_write(tmp_path, "l2.txt", "video1\nvideo2\nvideo1\n"))


def test_msrvtt_mc_csv(tmp_path: Path) -> None:
    head = "key\tvid_key\ta1\ta2\ta3\ta4\ta5\tanswer\n"
    path = _write(tmp_path, "MSR_MC_test.csv", head + "mc0\tmsr7010\ta man\ta dog\tcars\train\tfood\t2\n")
    (rec,) = read_msrvtt_mc_csv(path)
    assert (rec.video, rec.label, rec.options[2], rec.task) == ("video7010", 2, "cars", "multiple_choice")
    bad = _write(tmp_path, "bad_mc.csv", head + "mc0\tmsr1\ta\tb\tc\td\te\ttwo\n")
    with pytest.raises(AnnotationError, match=r"bad_mc\.csv, line 2: answer must be an integer, found 'two'"):
        read_msrvtt_mc_csv(bad)


def test_msrvtt_qa_json(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "test_qa.json", '[{"answer":"man","id":158581,"question":"who is\\/was?","video_id":7010}]'
    )
    (rec,) = read_msrvtt_qa_json(path)
    assert (rec.video, rec.answer, rec.text, rec.sample_id) == ("video7010", "man", "who is/was?", "158581")


# -------------------------------------------------------------------------------------------------- MSVD
def test_youtube_mapping_crlf_and_lf_copies_agree(tmp_path: Path) -> None:
    crlf = read_youtube_mapping(ANN / "msvd/youtube_mapping.txt")
    assert crlf == read_youtube_mapping(ANN / "msvd_qa/youtube_mapping.txt")
    assert crlf[1] == "-4wsuPCjDBc_5_15" and len(crlf) == 30
    last = _write(tmp_path, "m.txt", b"-4wsuPCjDBc_5_15 vid1\r\nzzit5b_-ukg_5_20 vid1970")
    assert read_youtube_mapping(last)[1970] == "zzit5b_-ukg_5_20"


def test_msvd_qa_mapping_and_escaped_slash() -> None:
    recs = read_msvd_qa_json(ANN / "msvd_qa/train_qa.json", youtube_mapping=ANN / "msvd/youtube_mapping.txt")
    assert recs[0].video == "-4wsuPCjDBc_5_15" and recs[0].task == "open_qa" and recs[0].answer == "animal"
    esc = read_annotations("msvd_qa_json", ANN / "msvd_qa/train_qa.escaped_slash_records.json")
    assert esc[0].video == "vid625" and "3/4 inch" in esc[0].text
    assert read_msvd_qa_json(ANN / "msvd_qa/test_qa_encode.json")[0].answer == "someone"  # extra key ignored
    with pytest.raises(
        AnnotationError, match=r"test_qa\.json, record 0: video_id 1451 is not in the youtube"
    ):
        read_msvd_qa_json(ANN / "msvd_qa/test_qa.json", youtube_mapping=ANN / "msvd/youtube_mapping.txt")


def test_msvd_caption_layouts(tmp_path: Path) -> None:
    header = "".join(f"# header {i}\n" for i in range(7))
    txt = _write(
        tmp_path,
        "AllVideoDescriptions.txt",
        header + "-4wsuPCjDBc_5_15 a squirrel eats\n-4wsuPCjDBc_5_15 a chipmunk\n",
    )
    recs = read_msvd_descriptions_txt(txt)
    assert [(r.sample_id, r.video, r.text) for r in recs] == [
        ("-4wsuPCjDBc_5_15#0", "-4wsuPCjDBc_5_15", "a squirrel eats"), ("-4wsuPCjDBc_5_15#1", "-4wsuPCjDBc_5_15", "a chipmunk")
    ]  # fmt: skip
    with pytest.raises(AnnotationError, match=r"AllVideoDescriptions\.txt, line 6: expected"):
        read_msvd_descriptions_txt(txt, header_lines=5)
    csv_text = (
        "VideoID,Start,End,WorkerID,Source,AnnotationTime,Language,Description\n"
        'mv89psg6zh4,33,46,1,clean,17,English,"A bird, in a sink."\nmv89psg6zh4,33,46,2,clean,9,German,Ein Vogel\n'
    )
    corpus = read_msvd_corpus_csv(_write(tmp_path, "video_corpus.csv", csv_text))
    assert [(r.video, r.text) for r in corpus] == [("mv89psg6zh4_33_46", "A bird, in a sink.")]
    assert len(read_msvd_corpus_csv(tmp_path / "video_corpus.csv", language=None)) == 2


# ------------------------------------------------------------------------------------------------ DiDeMo
def test_didemo_paragraph_groups_in_file_order(tmp_path: Path) -> None:
    items = [
        {"num_segments": 6, "description": "first", "times": [[0, 1]], "video": "a.mov", "annotation_id": 9},
        {"num_segments": 6, "description": "other", "times": [[2, 2]], "video": "b.", "annotation_id": 1},
        {"num_segments": 6, "description": "second", "times": [[3, 3]], "video": "a.mov", "annotation_id": 2},
    ]
    path = _write(tmp_path, "d.json", json.dumps(items))
    recs = read_didemo_json(path)
    assert [(r.video, r.text) for r in recs] == [("a.mov", "first second"), ("b.", "other")]
    assert recs[0].captions == ["first", "second"]
    assert [r.video for r in read_didemo_json(path, strip_extension=True)] == ["a", "b"]


def test_didemo_real_quirks_and_moments() -> None:
    noext = read_didemo_json(ANN / "didemo/test_data.no_extension_records.json")
    assert all(r.video.endswith(".") for r in noext)
    five = read_didemo_json(ANN / "didemo/test_data.five_segment_records.json", mode="moment")
    assert [(r.start, r.end) for r in five] == [(0.0, 15.0), (10.0, 15.0), (15.0, 25.0)]
    first = read_didemo_json(ANN / "didemo/test_data.json", mode="moment")[0]
    assert (first.start, first.end) == (20.0, 25.0)  # 7 annotator pairs, [4, 4] most frequent
    assert len(read_annotations("didemo_json", ANN / "didemo/val_data.json")) >= 1


def test_didemo_bad_times(tmp_path: Path) -> None:
    item = {"num_segments": 5, "description": "x", "times": [[0, 5]], "video": "a.mov"}
    with pytest.raises(AnnotationError, match=r"record 1: bad times pair \[0, 5\] for 5 segments"):
        read_didemo_json(_write(tmp_path, "d.json", json.dumps([{**item, "times": [[0, 4]]}, item])))


# ------------------------------------------------------------------------------------------------- LSMDC
CLIP = "3011_BLIND_DATING_01.11.23.496-01.11.25.853"
STAMPS = "01.11.23.496\t01.11.25.853\t01.11.23.000\t01.11.26.000"


def test_lsmdc_retrieval_annos(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "LSMDC16_annos_val.csv", f"{CLIP}\t{STAMPS}\tSOMEONE smiles.\n{CLIP}\t{STAMPS}\tHe nods.\n"
    )
    recs = read_lsmdc_annos_csv(path)
    assert [r.sample_id for r in recs] == [f"{CLIP}#0", f"{CLIP}#1"] and recs[1].text == "He nods."
    nested = read_lsmdc_annos_csv(path, movie_dirs=True, video_ext=".avi")[0].video
    assert nested == f"3011_BLIND_DATING/{CLIP}.avi"
    bad = _write(tmp_path, "b.csv", f"{CLIP}\t01:11:23\t{STAMPS[13:]}\tx\n")
    with pytest.raises(AnnotationError, match=r"b\.csv, line 1: time-stamp must be hh\.mm\.ss\.mmm"):
        read_lsmdc_annos_csv(bad)


def test_lsmdc_multiple_choice_layouts(tmp_path: Path) -> None:
    train = _write(tmp_path, "mc_train.csv", f"{CLIP}\t{STAMPS}\tright\td1\td2\td3\td4\n")
    (rec,) = read_lsmdc_mc_csv(train)
    assert rec.options == ["right", "d1", "d2", "d3", "d4"] and rec.label == 0
    shuffled = [read_lsmdc_mc_csv(train, shuffle_seed=s)[0] for s in range(6)]
    assert all(r.options[r.label] == "right" for r in shuffled)
    assert len({r.label for r in shuffled}) > 1  # the seed moves the answer
    assert read_lsmdc_mc_csv(train, shuffle_seed=3)[0].options == shuffled[3].options  # deterministic
    test = _write(tmp_path, "mc_test.csv", f"{CLIP}\t{STAMPS}\ts1\ts2\ts3\ts4\ts5\t4\n")
    assert read_lsmdc_mc_csv(test)[0].label == 3
    bad = _write(tmp_path, "mc_bad.csv", f"{CLIP}\t{STAMPS}\ts1\ts2\ts3\ts4\ts5\t6\n")
    with pytest.raises(AnnotationError, match=r"mc_bad\.csv, line 1: ANSWER_INDEX must be 1\.\.5"):
        read_lsmdc_mc_csv(bad)


def test_lsmdc_fib(tmp_path: Path) -> None:
    head = "key\tvid_key\tblank_sentence\tanswer\n"
    path = _write(tmp_path, "LSMDC16_FIB_val.csv", head + f"fib0\t{CLIP}\tSOMEONE _____ the door.\topens\n")
    (rec,) = read_lsmdc_fib_csv(path)
    assert (rec.task, rec.text, rec.answer, rec.video) == (
        "fill_blank",
        "SOMEONE _____ the door.",
        "opens",
        CLIP,
    )
    with pytest.raises(AnnotationError, match=r"line 2: blank_sentence has no '_____'"):
        read_lsmdc_fib_csv(_write(tmp_path, "f.csv", head + "k\tv\tno blank here\tx\n"))


# ----------------------------------------------------------------------------------------------- TGIF-QA
@pytest.mark.parametrize(
    ("name", "task", "n"),
    [
        ("Test_action_question.csv", "multiple_choice", 30),
        ("Train_action_question.csv", "multiple_choice", 30),
        ("Test_transition_question.csv", "multiple_choice", 30),
        ("Test_frameqa_question.csv", "open_qa", 30),
        ("Test_count_question.csv", "open_qa", 30),
        ("Train_count_question.csv", "open_qa", 30),
    ],
)
def test_tgif_real_files(name: str, task: str, n: int) -> None:
    recs = read_tgif_qa_csv(ANN / "tgif_qa" / name)
    assert len(recs) == n and all(r.task == task for r in recs)
    assert not any(
        "\r" in r.text or "\r" in (r.answer or "") or "\r" in "".join(r.options or []) for r in recs
    )


def test_tgif_fields() -> None:
    act = read_annotations("tgif_action_csv", ANN / "tgif_qa/Test_action_question.csv")[0]
    assert (act.sample_id, act.video, act.label, act.options[4]) == (
        "ACTION4",
        "tumblr_nk172bbdPI1u1lr18o1_250",
        4,
        "flap wings",
    )
    frame = read_tgif_qa_csv(ANN / "tgif_qa/Test_frameqa_question.csv")[1]
    assert frame.text == "where is the guy walking very funny . ?" and frame.answer == "machine"
    assert frame.captions == ["a guy is walking very funny in a machine ."]
    assert read_tgif_qa_csv(ANN / "tgif_qa/Test_count_question.csv")[0].answer == "3"


def test_tgif_doubled_quotes_unquote_like_csv() -> None:
    recs = read_tgif_qa_csv(ANN / "tgif_qa/Test_transition_question.quoted_rows.csv")
    assert recs[0].options[4] == 'respond "no"' and recs[1].options[3] == 'write "i love you"'
    assert (recs[0].label, recs[1].label) == (0, 1)


def test_tgif_wrong_task_and_bad_answer(tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match="is not the TGIF-QA count header"):
        read_tgif_qa_csv(ANN / "tgif_qa/Test_action_question.csv", task="count")
    head = "gif_name\tquestion\ta1\ta2\ta3\ta4\ta5\tanswer\tvid_id\tkey\r\n"
    bad = _write(tmp_path, "t.csv", head + "g\tq ?\ta\tb\tc\td\te\t7\tACTION1\t1\r\n")
    with pytest.raises(
        AnnotationError, match=r"t\.csv, line 2: answer must be an option index 0\.\.4, found 7"
    ):
        read_tgif_qa_csv(bad)


# ------------------------------------------------------------------------------------- VIOLET txt_*.json
def test_violet_txt_layouts() -> None:
    ret = read_violet_txt_json(ANN / "violet/txt_msrvtt-retrieval.json", split="train")
    assert ret[0].video == "video5029" and ret[0].task == "retrieval" and len(ret) == 30
    qa = read_violet_txt_json(ANN / "violet/txt_msvd-qa.json", split="train")
    vocab = json.loads((ANN / "violet/txt_msvd-qa.json").read_text())["vocab"]
    assert qa[0].label == 91 and qa[0].answer == vocab[91] and qa[0].video == "7xNG7qGY9rw_14_29"
    mc = read_violet_txt_json(ANN / "violet/txt_tgif-action.json", split="train")[0]
    assert mc.options == ["jump stage", "roll", "step", "sway", "count fingers"] and mc.label == 4
    web = read_annotations("violet_txt_json", ANN / "violet/txt_webvid2.5m.json", split="val")
    assert len(web) == 30 and web[0].task == "caption" and not web[0].is_image
    cc = read_violet_txt_json(ANN / "violet/txt_cc3m.json", split="train", is_image=True)
    assert cc[0].sample_id == "00000000" and cc[0].is_image and cc[0].text == "a very typical bus station"


def test_violet_txt_errors(tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match=r"no split 'dev'; the file has \['train', 'val', 'test'\]"):
        read_violet_txt_json(ANN / "violet/txt_msvd-qa.json", split="dev")
    path = _write(
        tmp_path,
        "txt.json",
        json.dumps({"train": [{"video": "v", "question": "q", "answer": 5}], "vocab": ["a"]}),
    )
    with pytest.raises(
        AnnotationError, match=r"txt\.json, train\[0\]: answer index 5 does not fit a vocab of 1"
    ):
        read_violet_txt_json(path, split="train")


# ------------------------------------------------------------------------------------------ frame store
def _tsv_store(tmp_path: Path, extra_column: bool = False) -> tuple[Path, dict[str, list[bytes]]]:
    videos = {"video7017": [b"\xff\xd8a", b"\xff\xd8bb"], "video1": [b"\xff\xd8c"]}
    tsv, offsets = bytearray(), []
    for vid, frames in videos.items():
        offsets.append(len(tsv))
        cols = [vid] + (["{}"] if extra_column else []) + [base64.b64encode(f).decode() for f in frames]
        tsv += ("\t".join(cols) + "\n").encode()
    path = _write(tmp_path, "img_msrvtt.tsv", bytes(tsv))
    _write(tmp_path, "img_msrvtt.lineidx", "".join(f"{o}\n" for o in offsets))
    return path, videos


def test_tsv_frame_store_with_lineidx(tmp_path: Path) -> None:
    path, videos = _tsv_store(tmp_path)
    store = TsvFrameStore(path)
    assert len(store) == 2 and "video1" in store and "video2" not in store
    assert store["video7017"] == videos["video7017"] and store["video1"] == videos["video1"]
    clone = pickle.loads(pickle.dumps(store))  # DataLoader workers get a picklable store
    assert clone["video1"] == videos["video1"]
    with pytest.raises(KeyError):
        store["video2"]


def test_tsv_frame_store_with_id2lineidx_and_extra_column(tmp_path: Path) -> None:
    path, videos = _tsv_store(tmp_path, extra_column=True)
    table = {"video7017": 0, "video1": int((tmp_path / "img_msrvtt.lineidx").read_text().split()[1])}
    pkl = _write(tmp_path, "img_msrvtt.id2lineidx.pkl", pickle.dumps(table))
    assert TsvFrameStore(path, id2lineidx=pkl, frame_column=2)["video1"] == videos["video1"]
    js = _write(tmp_path, "id2lineidx.json", json.dumps({**table, "video7017": 5}))
    with pytest.raises(AnnotationError, match=r"img_msrvtt\.tsv, byte 5: line holds id"):
        TsvFrameStore(path, id2lineidx=js, frame_column=2)["video7017"]


# ------------------------------------------------------------------------------- malformed input, registry
def test_missing_column_names_file_and_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "jsf.csv", "key,vid_key,video_id,sentence\nret0,msr1,video1,a cat\nret1,msr2,video2\n"
    )
    with pytest.raises(AnnotationError, match=r"jsf\.csv, line 3: expected 4 columns"):
        read_msrvtt_jsfusion_csv(path)


def test_invalid_json_names_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "qa.json", '[\n{"answer": "a", "id": 1, "question": "q", "video_id": 1},\n{"answer": }\n]'
    )
    with pytest.raises(AnnotationError, match=r"qa\.json, line 3: invalid JSON at column"):
        read_msvd_qa_json(path)


def test_missing_key_names_record(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "qa.json", json.dumps([{"answer": "a", "id": 1, "question": "q", "video_id": 1}, {"id": 2}])
    )
    with pytest.raises(AnnotationError, match=r"qa\.json, record 1: missing required key 'answer'"):
        read_msvd_qa_json(path)
    wrong = _write(
        tmp_path, "qa2.json", json.dumps([{"answer": "a", "id": 1, "question": "q", "video_id": "1"}])
    )
    with pytest.raises(AnnotationError, match=r"record 0: key 'video_id' must be int, found '1'"):
        read_msvd_qa_json(wrong)


def test_non_integer_answer_index(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "a.csv", "gif_name\tquestion\tanswer\tvid_id\tkey\ng\tHow many ?\tthree\tCOUNT1\t1\n"
    )
    with pytest.raises(
        AnnotationError, match=r"a\.csv, line 2: answer \(count\) must be an integer, found 'three'"
    ):
        read_tgif_qa_csv(path)


@pytest.mark.parametrize("fmt", sorted(READERS))
def test_every_reader_rejects_an_empty_file(tmp_path: Path, fmt: str) -> None:
    path = _write(tmp_path, "empty.txt", "")
    with pytest.raises(AnnotationError, match=r"empty\.txt: file is empty"):
        read_annotations(fmt, path)


def test_header_only_file_has_no_records(tmp_path: Path) -> None:
    path = _write(tmp_path, "h.csv", "key,vid_key,video_id,sentence\n")
    with pytest.raises(AnnotationError, match=r"h\.csv: no records found"):
        read_annotations("msrvtt_jsfusion_csv", path)


def test_registry_and_unknown_format(tmp_path: Path) -> None:
    assert {
        "webvid_csv",
        "cc3m_tsv",
        "msrvtt_jsfusion_csv",
        "didemo_json",
        "lsmdc_mc_csv",
        "tgif_qa_csv",
    } <= set(READERS)
    with pytest.raises(ValueError, match="unknown annotation format 'nope'; known formats"):
        read_annotations("nope", tmp_path / "x")
    with pytest.raises(AnnotationError, match="no such annotation file"):
        read_annotations("webvid_csv", tmp_path / "missing.csv")


def test_undecodable_bytes_name_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "l.txt", b"video1\nvideo\xff2\n")
    with pytest.raises(AnnotationError, match=r"l\.txt, line 2: not valid UTF-8"):
        read_video_list(path)
