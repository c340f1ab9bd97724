"""The synthetic benchmark: real decodable mp4s, real annotation layouts, answers true to the pixels."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest

from violetv2.data.synthetic import SyntheticPaths, build_tokenizer, generate, main, wordpiece_vocab
from violetv2.data.synthetic_render import (
    COLOURS,
    FOREGROUND_THRESHOLD,
    Action,
    encode_mp4,
    render_clip,
    sample_clip,
)
from violetv2.data.synthetic_text import ANSWER_WORDS, _false_mirrors, base_phrase, mc_action

PARAMS = {"num_train": 12, "num_test": 4, "size": 48, "seconds": 1.0, "fps": 8, "seed": 0}
FRAMES = 8


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> SyntheticPaths:
    return generate(tmp_path_factory.mktemp("synth") / "a", workers=1, **PARAMS)


def decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def annotation_files(paths: SyntheticPaths) -> dict[str, Path]:
    files = {k: p for k, p in paths.files().items() if p.is_file() and k != "manifest"}
    files.update({f"tok/{p.name}": p for p in paths.tokenizer.iterdir()})
    return files


def read_tsv(path: Path) -> tuple[bytes, list[list[str]]]:
    raw = path.read_bytes()
    return raw, list(csv.reader(io.StringIO(raw.decode("utf-8"), newline=""), delimiter="\t"))


def test_every_clip_is_a_decodable_mp4_with_the_expected_frames(bench: SyntheticPaths) -> None:
    clips = json.loads(bench.clips.read_text())
    assert len(clips) == 16 and sum(c["split"] == "test" for c in clips) == 4
    for clip in clips:
        frames = decode(bench.videos / clip["video"])
        assert frames.shape == (FRAMES, 48, 48, 3)
    with av.open(str(bench.videos / clips[0]["video"])) as container:
        assert container.streams.video[0].codec_context.name in ("h264", "mpeg4")
    manifest = json.loads(bench.manifest.read_text())
    assert manifest["counts"]["frames"] == FRAMES and manifest["params"]["num_train"] == 12


def test_same_seed_same_bytes_and_pixels_across_worker_counts(bench: SyntheticPaths, tmp_path: Path) -> None:
    other = generate(tmp_path / "b", workers=2, **PARAMS)
    for key, path in annotation_files(bench).items():
        twin = other.root / path.relative_to(bench.root)
        assert path.read_bytes() == twin.read_bytes(), key
    for path in sorted(bench.videos.iterdir())[:6]:
        np.testing.assert_array_equal(decode(path), decode(other.videos / path.name))
    changed = generate(tmp_path / "c", workers=1, **{**PARAMS, "seed": 1})
    assert changed.ret_train.read_bytes() != bench.ret_train.read_bytes()


@pytest.mark.skipif("libx264" not in av.codecs_available, reason="this PyAV build has no libx264")
def test_encoding_the_same_frames_again_gives_the_same_bytes(tmp_path: Path) -> None:
    """Quickstart-sized clips (64 px, 16 frames), each encoded twice: with x264's default macroblock-tree rate
    control about one clip in seven came out different the second time (measured: 5 of 36, 20 of 144)."""
    rng = np.random.default_rng(0)
    for n in range(36):
        frames = render_clip(sample_clip(rng), 64, 16)
        first, second = tmp_path / "first.mp4", tmp_path / "second.mp4"
        encode_mp4(frames, first, 8, "libx264")
        encode_mp4(frames, second, 8, "libx264")
        assert first.read_bytes() == second.read_bytes(), f"clip {n}"


def test_webvid_layout(bench: SyntheticPaths) -> None:
    raw = bench.webvid_train.read_bytes()
    assert raw.startswith(b"videoid,contentUrl,duration,page_dir,name\n") and b"\r" not in raw
    rows = list(csv.reader(io.StringIO(raw.decode(), newline="")))
    assert len(rows) == 13 and all(len(r) == 5 for r in rows)
    assert any(b'"' in line for line in raw.splitlines()), "captions with commas are RFC-4180 quoted"
    for videoid, url, duration, page_dir, name in rows[1:]:
        assert (
            re.fullmatch(r"\d+_0_1", videoid)
            and (bench.root / url).is_file()
            and url == f"videos/{videoid}.mp4"
        )
        assert duration == "PT00H00M01S" and re.fullmatch(r"\d{6}_\d{6}", page_dir)
        assert name[0].isupper() and name.endswith(".")
    val = list(csv.reader(io.StringIO(bench.webvid_val.read_text(), newline="")))
    assert {r[0] for r in val[1:]}.isdisjoint(r[0] for r in rows[1:])


def test_umt_retrieval_layout(bench: SyntheticPaths) -> None:
    for path, train in ((bench.ret_train, True), (bench.ret_test, False)):
        raw = path.read_text()
        data = json.loads(raw)
        assert json.dumps(data) == raw, "json.dumps default separators, no trailing newline"
        for entry in data:
            assert list(entry) == ["video", "caption", "duration"] and entry["video"].endswith(".mp4")
            assert isinstance(entry["duration"], float) and entry["duration"] == 1.0
            assert (bench.videos / entry["video"]).is_file()
            if train:
                assert isinstance(entry["caption"], list) and all(
                    isinstance(c, str) for c in entry["caption"]
                )
            else:
                assert isinstance(entry["caption"], str)
    assert len(json.loads(bench.ret_train.read_text())) == 12


@pytest.mark.parametrize("kind", ["action", "transition"])
def test_tgif_multiple_choice_layout(bench: SyntheticPaths, kind: str) -> None:
    raw, rows = read_tsv(getattr(bench, f"{kind}_test"))
    assert raw.endswith(b"\r\n") and raw.count(b"\n") == raw.count(b"\r\n") == 5
    assert rows[0] == ["gif_name", "question", "a1", "a2", "a3", "a4", "a5", "answer", "vid_id", "key"]
    prefix = "ACTION" if kind == "action" else "TRANS"
    for row in rows[1:]:
        assert len(row) == 10 and 0 <= int(row[7]) <= 4 and len(set(row[2:7])) == 5
        assert row[8].startswith(prefix) and int(row[9]) > 12  # test clips come after the train clips
        assert (bench.videos / f"{row[0]}.mp4").is_file() and row[1].endswith(" ?")


def test_msrvtt_mc_layout_has_one_true_caption(bench: SyntheticPaths) -> None:
    from violetv2.data.readers import read_annotations

    specs = {c["video"]: c for c in json.loads(bench.clips.read_text())}
    for path in (bench.mc_train, bench.mc_test):
        records = read_annotations("msrvtt_mc_csv", path)
        assert len(records) == (12 if path == bench.mc_train else 4)
        for record in records:
            spec = specs[f"{record.video}.mp4"]
            subject = f"{spec['colour']} {spec['shape']}"
            assert [subject in option for option in record.options].count(True) == 1
            assert subject in record.options[record.label] and record.text == ""


def test_prompt_words_are_single_pieces(bench: SyntheticPaths) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(bench.tokenizer), local_files_only=True)
    for word in ("answer", ":", "option", "0", "1", "2", "3", "4"):
        assert tok.tokenize(word) == [word]


def test_frameqa_msvdqa_fib_layouts(bench: SyntheticPaths) -> None:
    raw, rows = read_tsv(bench.frameqa_train)
    assert raw.endswith(b"\r\n") and raw.count(b"\n") == raw.count(b"\r\n")
    assert rows[0] == ["gif_name", "question", "answer", "type", "vid_id", "key", "description"]
    assert all(len(r) == 7 and r[3] in {"0", "2", "3"} and r[2] in ANSWER_WORDS for r in rows[1:])
    train_raw, test_raw = bench.msvdqa_train.read_text(), bench.msvdqa_test.read_text()
    train, test = json.loads(train_raw), json.loads(test_raw)
    assert json.dumps(train, separators=(",", ":")) == train_raw
    assert all(list(q) == ["answer", "id", "question", "video_id"] for q in train + test)
    assert [q["id"] for q in train + test] == list(range(len(train) + len(test)))
    mapping_raw = bench.msvd_mapping.read_bytes()
    assert b"\r\n" in mapping_raw and not mapping_raw.endswith(b"\n")
    mapping = dict(line.split(" ")[::-1] for line in mapping_raw.decode().split("\r\n"))
    names = [mapping["vid{}".format(q["video_id"])] for q in train + test]
    assert all((bench.videos / f"{name}.mp4").is_file() for name in names)
    assert {q["video_id"] for q in train}.isdisjoint(q["video_id"] for q in test)
    raw, rows = read_tsv(bench.fib_test)
    assert rows[0] == ["key", "vid_key", "blank_sentence", "answer"] and b"\r" not in raw and len(rows) == 5
    for key, vid_key, sentence, answer in rows[1:]:
        assert key.startswith("FIB") and (bench.videos / f"{vid_key}.mp4").is_file()
        assert sentence.split(" ").count("_____") == 1 and answer in ANSWER_WORDS


def foreground(frames: np.ndarray) -> np.ndarray:
    return frames.max(-1) > FOREGROUND_THRESHOLD


def shifts(frames: np.ndarray) -> np.ndarray | None:
    """Foreground centroid of every frame minus that of frame 0 ``(t, 2)``; None if a frame is empty."""
    masks = foreground(frames)
    if (masks.sum((1, 2)) <= 3).any():
        return None
    centroids = np.array([(xs.mean(), ys.mean()) for ys, xs in (np.nonzero(m) for m in masks)])
    return centroids - centroids[0]


def heading(frames: np.ndarray) -> str:
    """Direction of the largest excursion of the foreground centroid from its position in frame 0."""
    shift = shifts(frames)
    dx, dy = shift[np.abs(shift).sum(1).argmax()]
    if abs(dx) > abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


def colour_of(frame: np.ndarray) -> str:
    mean = frame[foreground(frame[None])[0]].mean(0)
    return min(COLOURS, key=lambda c: np.abs(np.array(COLOURS[c]) - mean).sum())


def half(question: str, frames: np.ndarray) -> np.ndarray | None:
    if " first" in question:
        return frames[: FRAMES // 2]
    if " last" in question:
        return frames[FRAMES // 2 :]
    return None


def check_against_pixels(question: str, answer: str, frames: np.ndarray) -> bool:
    """Whether a direction / colour / appearance answer agrees with what the decoded frames show."""
    visible = np.flatnonzero(foreground(frames).sum((1, 2)) > 3)
    if question.startswith(("which way", "which direction")):
        part = half(question, frames)
        if part is None:  # only one half moves: the fully visible one with the larger excursion
            reach = [-1.0 if (s := shifts(p)) is None else np.abs(s).max() for p in (frames[:4], frames[4:])]
            part = (frames[:4], frames[4:])[int(np.argmax(reach))]
        return heading(part) == answer
    if "colour is" in question or "color is" in question:
        frame = frames[visible[-1] if "at the end" in question else visible[0]]
        return colour_of(frame) == answer
    if "appear or disappear" in question:
        return answer == ("appear" if visible[0] > 0 else "disappear")
    return True


def test_motion_and_order_answers_match_the_rendered_pixels(bench: SyntheticPaths) -> None:
    videos = {}
    _, rows = read_tsv(bench.frameqa_train)
    checked = 0
    for gif, question, answer, *_ in rows[1:]:
        frames = videos.setdefault(gif, decode(bench.videos / f"{gif}.mp4"))
        assert check_against_pixels(question, answer, frames), (gif, question, answer)
        checked += question.startswith("which way") or "colour is" in question
    mapping = dict(line.split(" ")[::-1] for line in bench.msvd_mapping.read_text().splitlines())
    for item in json.loads(bench.msvdqa_train.read_text()):
        gif = mapping[f"vid{item['video_id']}"]
        frames = videos.setdefault(gif, decode(bench.videos / f"{gif}.mp4"))
        assert check_against_pixels(item["question"], item["answer"], frames), (gif, item)
        checked += "appear or disappear" in item["question"] or "direction" in item["question"]
    assert checked >= 12


def test_transition_answers_follow_the_event_order(bench: SyntheticPaths) -> None:
    clips = {c["video"]: c for c in json.loads(bench.clips.read_text())}
    _, rows = read_tsv(bench.transition_train)
    for row in rows[1:]:
        first, last = (Action(**a) for a in clips[f"{row[0]}.mp4"]["actions"])
        target, other = (first, last) if row[1].endswith("first ?") else (last, first)
        assert row[2 + int(row[7])] == base_phrase(target)
        assert base_phrase(other) in row[2:7], "the other true event is a distractor: order is needed"


def test_action_distractors_are_random_false_actions(bench: SyntheticPaths) -> None:
    """TGIF-QA Action's distractors are other actions drawn at random; ours too (not the confusable mirrors)."""
    clips = {c["video"]: c for c in json.loads(bench.clips.read_text())}
    for row in read_tsv(bench.action_train)[1][1:]:
        true = {base_phrase(Action(**a)) for a in clips[f"{row[0]}.mp4"]["actions"]}
        assert row[2 + int(row[7])] in true and not true & (set(row[2:7]) - {row[2 + int(row[7])]})
    rng, with_all_mirrors, questions = np.random.default_rng(0), 0, 0
    for _ in range(400):
        spec = sample_clip(rng)
        _, options, label = mc_action(spec, rng)
        mirrors = [
            m for a in spec.actions if base_phrase(a) == options[label] for m in _false_mirrors(a, spec)
        ]
        if mirrors:
            questions += 1
            with_all_mirrors += set(mirrors) <= set(options)
    # mirrored distractors would put every mirror in every question; random ones rarely do
    assert questions > 200 and with_all_mirrors / questions < 0.5


def test_appear_and_disappear_render_as_absent_frames() -> None:
    base = replace(sample_clip(np.random.default_rng(3)), start=(0.6, 0.6))
    appear = replace(base, actions=(Action("appear"), Action("move", "left")))
    vanish = replace(base, actions=(Action("move", "up"), Action("disappear")))
    area_in = foreground(render_clip(appear, 64, 8)).sum((1, 2))
    area_out = foreground(render_clip(vanish, 64, 8)).sum((1, 2))
    assert area_in[0] == 0 and area_in[-1] > 20 and area_out[0] > 20 and area_out[-1] == 0
    assert (
        heading(render_clip(appear, 64, 8)[4:]) == "left" and heading(render_clip(vanish, 64, 8)[:4]) == "up"
    )


def test_tokenizer_loads_offline_and_answers_are_single_pieces(bench: SyntheticPaths) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(bench.tokenizer), local_files_only=True)
    assert len(tok) <= 1024 and tok.pad_token_id == 0
    assert tok.convert_tokens_to_ids(["[UNK]", "[CLS]", "[SEP]", "[MASK]"]) == [1, 2, 3, 4]
    answers = {r[2] for r in read_tsv(bench.frameqa_test)[1][1:]}
    answers |= {r[3] for r in read_tsv(bench.fib_train)[1][1:]}
    answers |= {q["answer"] for q in json.loads(bench.msvdqa_train.read_text())}
    for answer in answers | set(ANSWER_WORDS):
        assert tok.tokenize(answer) == [answer]
    for option in read_tsv(bench.action_train)[1][1][2:7]:
        assert tok.unk_token_id not in tok(option)["input_ids"]


@pytest.mark.parametrize(("limit", "error"), [(30, "exceed the limit 30"), (38, "not single word pieces")])
def test_tokenizer_fails_loudly_when_the_vocabulary_cannot_fit(
    tmp_path: Path, limit: int, error: str
) -> None:
    corpus = ["a red circle moves to the left then disappears"] * 5
    with pytest.raises(RuntimeError, match=error):
        build_tokenizer(corpus, tmp_path / "tok", answers=["disappears"], max_vocab=limit)
    assert len(wordpiece_vocab(corpus, 1024)) == len(set(wordpiece_vocab(corpus, 1024)))


def test_second_call_is_a_fast_no_op_and_new_params_regenerate(bench: SyntheticPaths) -> None:
    video = next(bench.videos.iterdir())
    stamp = video.stat().st_mtime_ns
    start = time.perf_counter()
    again = generate(bench.root, workers=1, **PARAMS)
    assert time.perf_counter() - start < 0.5 and again == bench and video.stat().st_mtime_ns == stamp
    bench.fib_test.unlink()  # an incomplete benchmark is rebuilt
    generate(bench.root, workers=1, **PARAMS)
    assert bench.fib_test.is_file() and video.stat().st_mtime_ns != stamp


@pytest.mark.parametrize("bad", [{"size": 33}, {"seconds": 0.25}, {"num_test": 0}])
def test_bad_parameters_are_rejected(tmp_path: Path, bad: dict) -> None:
    with pytest.raises(ValueError, match="synthetic benchmark"):
        generate(tmp_path, workers=1, **{**PARAMS, **bad})


def test_cli_help_documents_the_options(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(
        flag in out for flag in ("--num-train", "--num-test", "--size", "--seconds", "--fps", "--workers")
    )


def test_the_real_layout_readers_parse_every_file(bench: SyntheticPaths) -> None:
    readers = pytest.importorskip("violetv2.data.readers")
    read = readers.read_annotations
    checks = [
        (read("webvid_csv", bench.webvid_train, video_layout="flat"), 12, "caption"),
        (read("umt_ret_json", bench.ret_test), 4, "retrieval"),
        (read("tgif_qa_csv", bench.action_test), 4, "multiple_choice"),
        (read("msrvtt_mc_csv", bench.mc_test), 4, "multiple_choice"),
        (read("tgif_qa_csv", bench.transition_train), 12, "multiple_choice"),
        (read("tgif_qa_csv", bench.frameqa_test), None, "open_qa"),
        (read("msvd_qa_json", bench.msvdqa_test, youtube_mapping=bench.msvd_mapping), 12, "open_qa"),
        (read("lsmdc_fib_csv", bench.fib_test), 4, "fill_blank"),
    ]
    for records, count, task in checks:
        assert count is None or len(records) == count
        for record in records:
            assert record.task == task
            assert (bench.videos / Path(record.video).with_suffix(".mp4").name).is_file(), record
