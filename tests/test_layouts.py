"""The downstream text layouts reproduce the release's token ids of the downstream parity fixture.

bert-base-uncased cannot be downloaded here, so the tokenizer is a WordPiece vocabulary with exactly the word
pieces these texts need at their bert-base-uncased ids (README section 3 of ``parity_downstream``) and unused
placeholders elsewhere: what is under test is the layout logic (special tokens, truncation, padding, label
positions), which does not depend on the other entries.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from violetv2.data import layouts

BERT_IDS = {
    "[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103,
    "a": 1037, "man": 2158, "is": 2003, "playing": 2652, "guitar": 2858, "on": 2006, "the": 1996, "stage": 2754,
    "woman": 2450, "cooking": 8434, "food": 2833, "in": 1999, "kitchen": 3829, "dog": 3899, "running": 2770,
    "beach": 3509, "people": 2111, "are": 2024, "dancing": 5613, "at": 2012, "party": 2283, "car": 2482,
    "driving": 4439, "down": 2091, "street": 2395, "who": 2040, "?": 1029, "sleeping": 5777, "cat": 4937,
    "two": 2048, "children": 2336, "nobody": 6343, "what": 2054, "does": 2515, "do": 2079, "times": 2335,
    "option": 5724, "0": 1014, "1": 1015, "2": 1016, "3": 1017, "4": 1018, ":": 1024, "nod": 7293,
    "head": 2132, "wave": 4400, "hand": 2192, "jump": 5376, "clap": 28618, "hands": 2398, "turn": 2735,
    "around": 2105, "girl": 2611, "after": 2044, "smiling": 5629, "look": 2298, "open": 2330, "door": 2341,
    "drink": 4392, "from": 2013, "cup": 2452, "laugh": 4756, "answer": 3437, "someone": 2619, "opens": 7480,
    "and": 1998, "walks": 7365, "into": 2046, "room": 2282, ".": 1012, "she": 2016, "smiles": 8451,
    "him": 2032, "nods": 11232,
}  # fmt: skip
BERT_SIZE = 30522

CAPTIONS = ["a man is playing a guitar on the stage", "a woman is cooking food in the kitchen"]
MC = [
    ("", [CAPTIONS[0], "a dog is running on the beach", CAPTIONS[1], "people are dancing at a party",
          "a car is driving down the street"]),
    ("who is in the kitchen?", ["a woman cooking", "a man sleeping", "a cat", "two children", "nobody"]),
]  # fmt: skip
TGIF = [
    ("what does the man do 3 times?", ["nod head", "wave hand", "jump", "clap hands", "turn around"], 1),
    ("what does the girl do after smiling?", ["look down", "open the door", "drink from a cup", "laugh", "wave"], 3),
]  # fmt: skip
QA = [("what is the man playing?", "guitar"), ("who is cooking in the kitchen?", "woman")]
FIB = [("someone opens the _____ and walks into the room.", "door"), ("she smiles and _____ at him.", "nods")]


@pytest.fixture(scope="module")
def bert(tmp_path_factory: pytest.TempPathFactory):
    from transformers import BertTokenizerFast

    lines = [f"[unused{i}]" for i in range(BERT_SIZE)]
    for token, i in BERT_IDS.items():
        lines[i] = token
    path = Path(tmp_path_factory.mktemp("bert")) / "vocab.txt"
    path.write_text("\n".join(lines) + "\n")
    return BertTokenizerFast(str(path), do_lower_case=True)


@pytest.fixture(scope="module")
def fixture(reference_dir: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    tensors = load_file(f"{reference_dir}/parity_downstream/violetv2_downstream_parity.safetensors")
    return {k: v for k, v in tensors.items() if k.startswith("in.") and k != "in.video"}


def _labels(t: torch.Tensor) -> torch.Tensor:
    return t.masked_fill(t == -1, layouts.IGNORE_INDEX)  # the release writes -1


def test_caption_layout_matches_the_release(bert, fixture) -> None:
    out = [layouts.caption(bert, c, 25) for c in CAPTIONS]
    assert torch.equal(torch.stack([o.ids for o in out]), fixture["in.ret_txt_ids"])
    assert torch.equal(torch.stack([o.mask for o in out]), fixture["in.ret_txt_mask"])


def test_vtm_multiple_choice_layout_matches_the_release(bert, fixture) -> None:
    out = [layouts.choice(bert, q, opts, 25) for q, opts in MC]
    assert torch.equal(torch.stack([o.ids for o in out]), fixture["in.qamc_txt_ids"])
    assert torch.equal(torch.stack([o.mask for o in out]), fixture["in.qamc_txt_mask"])


def test_mc_prompt_layout_matches_the_release(bert, fixture) -> None:
    out = [layouts.mc_prompt(bert, q, opts, label, 100) for q, opts, label in TGIF]
    ids = torch.stack([o.ids for o in out])
    assert ids.shape == (2, 103) and torch.equal(ids, fixture["in.tgif_txt_ids"])
    assert torch.equal(torch.stack([o.mask for o in out]), fixture["in.tgif_txt_mask"])
    assert torch.equal(torch.stack([o.labels for o in out]), _labels(fixture["in.tgif_mask_ans"]))
    assert fixture["in.tgif_ans_idx"].tolist() == [label for *_, label in TGIF]


def test_qa_layout_matches_the_release(bert, fixture) -> None:
    out = [layouts.qa(bert, q, a, 25) for q, a in QA]
    assert torch.equal(torch.stack([o.ids for o in out]), fixture["in.qaoe_txt_ids"])
    assert torch.equal(torch.stack([o.mask for o in out]), fixture["in.qaoe_txt_mask"])
    assert torch.equal(torch.stack([o.labels for o in out]), _labels(fixture["in.qaoe_mask_ans"]))


def test_fill_blank_layout_matches_the_release(bert, fixture) -> None:
    out = [layouts.fill_blank(bert, s, a, 25) for s, a in FIB]
    assert torch.equal(torch.stack([o.ids for o in out]), fixture["in.fib_txt_ids"])
    assert torch.equal(torch.stack([o.mask for o in out]), fixture["in.fib_txt_mask"])
    assert torch.equal(torch.stack([o.labels for o in out]), _labels(fixture["in.fib_mask_ans"]))
    written = layouts.fill_blank(bert, FIB[0][0].replace("_____", "[MASK]"), "door", 25)
    assert torch.equal(written.ids, fixture["in.fib_txt_ids"][0])  # the release's own "[MASK]" spelling


def test_caption_truncation_drops_sep_and_literal_specials_stay_one_token(bert) -> None:
    long = layouts.caption(bert, " ".join(["a man"] * 20), 10)
    assert long.ids.tolist() == [101] + [1037, 2158] * 4 + [0]  # L - 1 ids kept: no [SEP], one pad
    assert long.mask.tolist() == [1] * 9 + [0]
    special = layouts.caption(bert, "a man [SEP] a [MASK]", 10)
    assert special.ids.tolist()[:7] == [101, 1037, 2158, 102, 1037, 103, 102]
    assert special.mask.tolist() == [1] * 7 + [0] * 3


def test_mc_prompt_truncates_options_and_keeps_length(bert) -> None:
    q, opts, label = TGIF[0]
    out = layouts.mc_prompt(bert, q, opts, label, 12)
    full = layouts.mc_prompt(bert, q, opts, label, 100)
    assert out.ids.shape == (15,) and out.mask.tolist() == [1] * 14 + [0]  # 11 pieces kept, one pad
    assert out.ids.tolist()[:12] == full.ids.tolist()[:12] and out.ids.tolist()[12:] == [103, 102, 0]
    assert (out.labels != layouts.IGNORE_INDEX).sum() == 1 and out.labels[12] == 1015


def test_qa_labels_only_single_vocabulary_answers(bert) -> None:
    q = "what is the man playing?"
    for answer in ("electric guitar", "banjo", "Guitar"):  # two pieces / unknown / not an entry as written
        assert (layouts.qa(bert, q, answer, 25).labels == layouts.IGNORE_INDEX).all()
    long = layouts.qa(bert, " ".join(["who"] * 40), "guitar", 25)
    assert long.ids.shape == (30,) and long.ids.tolist()[-6:] == [2040, 3437, 1024, 103, 102, 0]
    assert long.labels[-3] == 2858 and (long.labels != layouts.IGNORE_INDEX).sum() == 1


def test_bad_inputs_raise(bert) -> None:
    with pytest.raises(ValueError, match="exactly one blank"):
        layouts.fill_blank(bert, "no blank here", "door", 25)
    with pytest.raises(ValueError, match="not a vocabulary entry"):
        layouts.mc_prompt(bert, "what?", ["a"] * 6, 5, 25)  # "5" is not in this vocabulary
