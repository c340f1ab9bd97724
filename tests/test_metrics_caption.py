"""Captioning metrics against pycocoevalcap 1.2 (BLEU / ROUGE-L / CIDEr-D need no Java; PTB and METEOR do)."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest
import torch

from violetv2.metrics import (
    CaptionMetrics,
    bleu,
    caption_scores,
    cider_d,
    meteor_score,
    ptb_tokenize,
    ptb_tokens,
    rouge_l,
)
from violetv2.metrics import meteor as meteor_module
from violetv2.metrics.meteor import find_java, find_meteor_jar

coco_bleu = pytest.importorskip("pycocoevalcap.bleu.bleu")
coco_rouge = pytest.importorskip("pycocoevalcap.rouge.rouge")
coco_cider = pytest.importorskip("pycocoevalcap.cider.cider")

ANNOTATIONS = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "annotations"
needs_java = pytest.mark.skipif(
    find_java() is None, reason="needs Java (the reference PTB tokenizer / METEOR)"
)

# MSRVTT / MSVD-style videos: several references each, predictions of varying quality.
REFERENCES = [
    [
        "A man is playing a guitar on stage.",
        "a guy plays guitar",
        "A musician performs a song with his guitar.",
    ],
    [
        "a woman is slicing onions in a kitchen",
        "someone chops an onion",
        "A lady cuts vegetables.",
        "cooking",
    ],
    ["two dogs are running in the park", "Dogs play with a ball on the grass.", "a dog chases another dog"],
    ["a cartoon character is talking", "an animated mouse speaks to his friend", "cartoon clip"],
    ["a boy plays a video game", "someone is playing grand theft auto 5", "a gameplay video of a car game"],
    ["a man is giving a review on a vehicle", "a car's interior is shown", "A man talks about a new car."],
    ["a little girl does gymnastics", "a girl performs on the balance beam", "A young gymnast is flipping."],
    ["people are dancing at a party", "a group of friends dance", "men and women dance to music"],
    ["a news anchor reports the weather", "a woman talks about tomorrow's forecast", "weather report on tv"],
    ["a chef puts pasta into boiling water", "someone is cooking spaghetti", "a person boils noodles"],
]
PREDICTIONS = [
    "a man is playing a guitar",
    "a woman is cutting an onion",
    "two dogs are playing in the grass",
    "a cartoon character is talking",
    "a man is playing a video game",
    "a man is talking about a car",
    "a girl is doing gymnastics",
    "a man is dancing",
    "a woman is talking",
    "",
]


def _coco(scorer, refs, preds):
    gts = {i: r for i, r in enumerate(refs)}
    res = {i: [p] for i, p in enumerate(preds)}
    return scorer.compute_score(gts, res, **({"verbose": 0} if isinstance(scorer, coco_bleu.Bleu) else {}))[0]


@pytest.fixture(scope="module")
def tokenized():
    flat = ptb_tokenize([r for refs in REFERENCES for r in refs])
    refs, pos = [], 0
    for r in REFERENCES:
        refs.append(flat[pos : pos + len(r)])
        pos += len(r)
    return ptb_tokenize(PREDICTIONS), refs


def test_scorers_equal_pycocoevalcap(tokenized):
    preds, refs = tokenized
    assert bleu(preds, refs) == pytest.approx(_coco(coco_bleu.Bleu(4), refs, preds), abs=1e-6)
    assert rouge_l(preds, refs) == pytest.approx(_coco(coco_rouge.Rouge(), refs, preds), abs=1e-6)
    assert cider_d(preds, refs) == pytest.approx(_coco(coco_cider.Cider(), refs, preds), abs=1e-6)
    assert cider_d(preds, refs) > 0.3  # a real, non-degenerate value
    # a perfect prediction set and a single sample too
    perfect = [r[0] for r in refs]
    assert cider_d(perfect, refs) == pytest.approx(_coco(coco_cider.Cider(), refs, perfect), abs=1e-6)
    assert bleu(preds[:1], refs[:1]) == pytest.approx(_coco(coco_bleu.Bleu(4), refs[:1], preds[:1]), abs=1e-6)


def test_cider_d_document_frequencies_need_the_whole_corpus(tokenized):
    preds, refs = tokenized
    halves = (cider_d(preds[:5], refs[:5]) + cider_d(preds[5:], refs[5:])) / 2
    assert abs(halves - cider_d(preds, refs)) > 1e-3


def test_caption_metric_scores_the_whole_corpus_once_and_dedups(tokenized):
    metric = CaptionMetrics(meteor=False, scale=1.0)
    metric.update(PREDICTIONS[:6], REFERENCES[:6], torch.arange(6))
    metric.update(PREDICTIONS[4:], REFERENCES[4:], torch.arange(4, 10))  # 4 and 5 repeated (padding)
    got = metric.compute()
    want = caption_scores(PREDICTIONS, REFERENCES)
    assert "METEOR" not in got and set(got) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr-D"}
    for key, value in want.items():
        assert got[key].item() == pytest.approx(value, abs=1e-12)
    preds, refs = tokenized
    assert got["CIDEr-D"].item() == pytest.approx(_coco(coco_cider.Cider(), refs, preds), abs=1e-6)
    scaled = CaptionMetrics(meteor=False)
    scaled.update(PREDICTIONS, REFERENCES, torch.arange(10))
    assert scaled.compute()["BLEU-4"].item() == pytest.approx(100 * want["BLEU-4"])


def test_caption_metric_bad_inputs():
    metric = CaptionMetrics(meteor=False)
    with pytest.raises(ValueError, match="non-empty list"):
        metric.update(["a cat"], ["a cat sits"], torch.tensor([0]))
    with pytest.raises(ValueError, match="2 predictions but 1"):
        metric.update(["a", "b"], [["a"]], torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="no captions"):
        metric.compute()


def test_meteor_unavailable_is_reported_as_missing_never_zero(monkeypatch, caplog):
    monkeypatch.setattr(meteor_module, "find_java", lambda: None)
    monkeypatch.setattr("violetv2.metrics.caption.find_java", lambda: None)
    with caplog.at_level(logging.WARNING):
        assert meteor_score(["a cat"], [["a cat"]]) is None
        metric = CaptionMetrics(meteor=True)
    assert "METEOR" in caplog.text
    metric.update(["a cat"], [["a cat sits"]], torch.tensor([0]))
    assert "METEOR" not in metric.compute()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_meteor_jar("/nonexistent/meteor-1.5.jar")


# PTB tokenisation: the Java tokenizer's outputs (checked below against Java itself), so the rules are also
# pinned where Java is absent.
PTB_CASES = {
    "A dog's toy.": "a dog 's toy",
    "The dogs' bones and James' book": "the dogs bones and james book",
    "He can't, won't and doesn't; I'm sure they've gone.": "he ca n't wo n't and does n't i 'm sure they 've gone",
    "CANNOT gonna wanna 'tis": "can not gon na wan na 't is",
    "\"Quoted\" text 'single' `back`": "quoted text single back",
    "a man (in a hat) [with] {braces}": "a man -lrb- in a hat -rrb- -lsb- with -rsb- -lcb- braces -rcb-",
    "well-known state-of-the-art -- dash \u2014 em \u2013 en x - y": "well-known state-of-the-art dash em en x y",
    "at 3.5 pm, $5, 10%, 1,000 people; 2:30 and 1 1/2 cups \u00bd": (
        "at 3.5 pm $ 5 10 % 1,000 people 2:30 and 1\u00a01/2 cups 1/2"
    ),
    "wait... what?! really?? hmm.... ok .": "wait what ?! really ?? hmm ok",
    "Caf\u00e9 na\u00efve \u201csmart\u201d \u2018quotes\u2019 it\u2019s \u00a35 \u20ac5 \u00a2": (
        "caf\u00e9 na\u00efve smart quotes it 's # 5 $ 5 cents"
    ),
    "Mr. Smith vs. Dr. Who, etc. The U.S. army a.m. e.g. approx. 5": (
        "mr. smith vs. dr. who etc. the u.s. army a.m. e.g. approx 5"
    ),
    "o'clock rock'n'roll 'em y'all the '90s ma'am": "o'clock rock 'n' roll 'em y' all the '90s ma'am",
    "a cat.The dog 3.The end a/b and/or #tag @user a&b AT&T": "a cat.the dog 3 the end a/b and/or #tag @user a & b at&t",
    "emoji \U0001f642 stays out \u2605": "emoji stays out \u2605",
    "": "",
}


def test_ptb_rules():
    assert ptb_tokenize(list(PTB_CASES)) == list(PTB_CASES.values())
    # an abbreviation ending a caption sees the start of the next one, as in the newline-joined Java input
    assert ptb_tokens(["the u.s.", "The end etc."]) == [["the", "u.s.", "."], ["the", "end", "etc.", "."]]
    assert ptb_tokens(["the u.s.", "the end"]) == [["the", "u.s."], ["the", "end"]]
    assert ptb_tokens(["(a) 'b'"]) == [["-lrb-", "a", "-rrb-", "`", "b", "'"]]


def _annotation_captions() -> list[str]:
    lines = [
        r[0]
        for r in csv.reader(
            open(ANNOTATIONS / "cc3m" / "Validation_GCC-1.1.0-Validation.tsv"), delimiter="\t"
        )
    ]
    for name in ("results_10M_val.csv", "results_2M_val.csv"):
        lines += [r["name"] for r in csv.DictReader(open(ANNOTATIONS / "webvid" / name))]
    lines += [r["description"] for r in json.load(open(ANNOTATIONS / "didemo" / "test_data.json"))]
    lines += [
        r["sentence"] for r in csv.DictReader(open(ANNOTATIONS / "msrvtt" / "MSRVTT_JSFUSION_test.csv"))
    ]
    return [line.replace("\n", " ") for line in lines if line.strip()]


@needs_java
def test_ptb_equals_the_java_tokenizer():
    ptb = pytest.importorskip("pycocoevalcap.tokenizer.ptbtokenizer")
    captions = list(PTB_CASES) + [c for refs in REFERENCES for c in refs] + PREDICTIONS
    captions += ["the u.s.", "The end etc.", "a.m. The", "plan b. The end.", "I. a. B. x"]
    if ANNOTATIONS.is_dir():
        captions += _annotation_captions()
    java = ptb.PTBTokenizer().tokenize({0: [{"caption": c} for c in captions]})[0]
    ours = ptb_tokenize(captions)
    diff = [(c, j, o) for c, j, o in zip(captions, java, ours) if j != o]
    assert not diff, diff[:5]
    assert len(java) == len(captions) > 100


@needs_java
@pytest.mark.slow
def test_meteor_equals_pycocoevalcap(tokenized):
    coco_meteor = pytest.importorskip("pycocoevalcap.meteor.meteor")
    if find_meteor_jar() is None:
        pytest.skip("no METEOR jar")
    preds, refs = tokenized
    preds, refs = preds[:4], refs[:4]
    want = _coco(coco_meteor.Meteor(), refs, preds)
    assert meteor_score(preds, refs) == pytest.approx(want, abs=1e-9)
    assert 0 < want < 1
