"""Pre-training and downstream losses: hand-computed values, gradients, sampling properties."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from violetv2.tasks.losses import (
    IGNORE_INDEX,
    bidirectional_contrastive_loss,
    mask_tokens,
    masked_mean,
    mlm_loss,
    multiple_choice_loss,
    pair_indices,
    vtm_loss,
    vtm_pairs,
)

PAD, CLS, SEP, MASK, VOCAB = 0, 101, 102, 103, 1000
SPECIALS = (PAD, CLS, SEP, MASK)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def captions(b: int, length: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``[CLS] words [SEP] [PAD]...`` with random lengths (words drawn away from the special ids)."""
    g = gen(seed)
    ids = torch.randint(200, VOCAB, (b, length), generator=g)
    lengths = torch.randint(3, length + 1, (b,), generator=g)
    pos = torch.arange(length)
    mask = (pos < lengths[:, None]).long()
    ids[:, 0] = CLS
    ids[pos == (lengths[:, None] - 1)] = SEP
    ids[mask == 0] = PAD
    return ids, mask


# ----------------------------------------------------------------------------------------------- VTM


@settings(derandomize=True, max_examples=25, deadline=None)
@given(st.integers(1, 12), st.one_of(st.none(), st.integers(0, 15)), st.integers(0, 1000))
def test_vtm_pairs_properties(b: int, k: int | None, seed: int) -> None:
    pairs = vtm_pairs(b, k, generator=gen(seed))
    o = b if k is None else min(k, b - 1) + 1
    assert pairs.shape == (b, o) and pairs.dtype == torch.long
    assert torch.equal(pairs[:, 0], torch.arange(b))
    for i, row in enumerate(pairs.tolist()):
        assert len(set(row)) == o  # distinct texts
        assert i not in row[1:]  # never its own text as a negative
        assert all(0 <= j < b for j in row)


def test_vtm_pairs_published_default() -> None:
    assert vtm_pairs(20).shape == (20, 4)  # min(B, 4): positive + 3 negatives
    assert vtm_pairs(3).shape == (3, 3)
    assert vtm_pairs(1).shape == (1, 1)
    assert torch.equal(vtm_pairs(3, None), torch.tensor([[0, 1, 2], [1, 0, 2], [2, 0, 1]]))


def test_vtm_pairs_negatives_are_random_and_seeded() -> None:
    pairs = torch.stack([vtm_pairs(6, 2, generator=gen(s)) for s in range(300)])
    counts = torch.bincount(pairs[:, 0, 1:].flatten(), minlength=6)  # negatives of video 0
    assert counts[0] == 0 and (counts[1:] > 80).all()  # 600 draws over 5 others: ~120 each
    assert torch.equal(vtm_pairs(8, generator=gen(4)), vtm_pairs(8, generator=gen(4)))
    with pytest.raises(ValueError, match="num_negatives"):
        vtm_pairs(4, -1)


def test_pair_indices() -> None:
    pairs = torch.tensor([[0, 2], [1, 0], [2, 1]])
    video_idx, text_idx = pair_indices(pairs)
    assert video_idx.tolist() == [0, 0, 1, 1, 2, 2]
    assert text_idx.tolist() == [0, 2, 1, 0, 2, 1]


def test_vtm_loss_hand_computed() -> None:
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    out = vtm_loss(logits, temperature=1.0)
    expected = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(1))) / 2
    assert out["loss"].item() == pytest.approx(expected, abs=1e-6)
    assert out["acc"].item() == 0.5
    assert out["pos_logit"].item() == 0.5 and out["neg_logit"].item() == 0.5
    out = vtm_loss(torch.tensor([[1.0, 0.0]]), temperature=0.5)  # logits / 0.5 = [2, 0]
    assert out["loss"].item() == pytest.approx(math.log(1 + math.exp(-2)), abs=1e-6)


def test_vtm_loss_temperature_and_gradient() -> None:
    right = torch.tensor([[0.3, 0.1, 0.0, -0.2]])
    wrong = right.flip(1)
    assert vtm_loss(right, 0.05)["loss"] < vtm_loss(right, 1.0)["loss"]  # sharper when correct
    assert vtm_loss(wrong, 0.05)["loss"] > vtm_loss(wrong, 1.0)["loss"]  # harsher when wrong
    logits = torch.zeros(3, 4, requires_grad=True)
    vtm_loss(logits)["loss"].backward()
    assert (logits.grad[:, 0] < 0).all() and (logits.grad[:, 1:] > 0).all()  # pushes positive up
    with pytest.raises(ValueError, match=r"\[b, o\]"):
        vtm_loss(torch.zeros(4))
    with pytest.raises(ValueError, match="temperature"):
        vtm_loss(torch.zeros(2, 2), temperature=0.0)


# ----------------------------------------------------------------------------------------------- MLM


def test_mask_tokens_rate_and_specials() -> None:
    ids, attn = captions(512, 32)
    masked, labels = mask_tokens(
        ids, attn, mask_token_id=MASK, vocab_size=VOCAB, special_ids=SPECIALS, generator=gen(0)
    )
    selected = labels != IGNORE_INDEX
    maskable = (attn == 1) & (ids != CLS) & (ids != SEP)
    assert not (selected & ~maskable).any()  # never pad / [CLS] / [SEP]
    rate = selected.sum() / maskable.sum()
    assert 0.14 < rate < 0.165
    assert torch.equal(labels[selected], ids[selected])
    assert (masked[selected] == MASK).all()  # published: always [MASK]
    assert torch.equal(masked[~selected], ids[~selected])
    assert selected.any(dim=1).all()  # every caption has words -> at least one selected


def test_mask_tokens_at_least_one_and_none_when_nothing_maskable() -> None:
    ids = torch.tensor([[CLS, 500, SEP, PAD], [CLS, SEP, PAD, PAD]])
    attn = (ids != PAD).long()
    for seed in range(20):
        masked, labels = mask_tokens(
            ids,
            attn,
            mask_token_id=MASK,
            vocab_size=VOCAB,
            special_ids=SPECIALS,
            prob=0.01,
            generator=gen(seed),
        )
        assert labels[0].tolist() == [-100, 500, -100, -100]
        assert masked[0].tolist() == [CLS, MASK, SEP, PAD]
        assert (labels[1] == IGNORE_INDEX).all() and torch.equal(masked[1], ids[1])


def test_mask_tokens_never_masks_existing_mask_token() -> None:
    ids = torch.tensor([[CLS, MASK, 300, SEP]])
    _, labels = mask_tokens(
        ids, torch.ones_like(ids), mask_token_id=MASK, vocab_size=VOCAB, special_ids=[CLS, SEP], prob=1.0
    )
    assert labels.tolist() == [[-100, -100, 300, -100]]


def test_mask_tokens_bert_mode_proportions() -> None:
    ids, attn = captions(1024, 32, seed=1)
    masked, labels = mask_tokens(
        ids, attn, mask_token_id=MASK, vocab_size=VOCAB, special_ids=SPECIALS, mode="bert", generator=gen(2)
    )
    selected = labels != IGNORE_INDEX
    n = selected.sum().item()
    to_mask = (masked[selected] == MASK).sum().item() / n
    unchanged = (masked[selected] == ids[selected]).sum().item() / n
    replaced = masked[selected][(masked[selected] != MASK) & (masked[selected] != ids[selected])]
    assert to_mask == pytest.approx(0.8, abs=0.02)
    assert unchanged == pytest.approx(0.1, abs=0.015)  # + rare random draws equal to the original
    assert len(replaced) / n == pytest.approx(0.1, abs=0.015)
    assert not torch.isin(replaced, torch.tensor(SPECIALS)).any() and (replaced < VOCAB).all()
    assert torch.equal(masked[~selected], ids[~selected])


def test_mask_tokens_bert_random_tokens_avoid_specials() -> None:
    ids = torch.randint(4, 8, (256, 16), generator=gen(0))  # vocabulary of 8: ids 0-3 special
    masked, labels = mask_tokens(
        ids,
        torch.ones_like(ids),
        mask_token_id=3,
        vocab_size=8,
        special_ids=[0, 1, 2],
        prob=1.0,
        mode="bert",
        generator=gen(1),
    )
    assert (labels == ids).all()
    assert set(masked.unique().tolist()) == {3, 4, 5, 6, 7}  # [MASK] or ordinary tokens only


def test_mask_tokens_deterministic_and_validated() -> None:
    ids, attn = captions(8, 16)
    kw = {"mask_token_id": MASK, "vocab_size": VOCAB, "special_ids": SPECIALS, "mode": "bert"}
    a = mask_tokens(ids, attn, generator=gen(3), **kw)
    b = mask_tokens(ids, attn, generator=gen(3), **kw)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    with pytest.raises(ValueError, match="mode"):
        mask_tokens(ids, attn, mask_token_id=MASK, vocab_size=VOCAB, special_ids=SPECIALS, mode="span")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prob"):
        mask_tokens(ids, attn, mask_token_id=MASK, vocab_size=VOCAB, special_ids=SPECIALS, prob=0.0)
    with pytest.raises(ValueError, match=r"\[b, l\]"):
        mask_tokens(ids, attn[:, :3], mask_token_id=MASK, vocab_size=VOCAB, special_ids=SPECIALS)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        mask_tokens(ids, attn, mask_token_id=VOCAB, vocab_size=VOCAB, special_ids=SPECIALS)


def test_mlm_loss_hand_computed() -> None:
    logits = torch.tensor([[[0.0, math.log(3.0)], [5.0, 0.0], [0.0, 0.0]]])  # [1, 3, vocab 2]
    labels = torch.tensor([[1, IGNORE_INDEX, 1]])
    out = mlm_loss(logits, labels)
    expected = (-math.log(3 / 4) + math.log(2)) / 2
    assert out["loss"].item() == pytest.approx(expected, abs=1e-6)
    assert out["acc"].item() == 0.5  # pos 0 right, pos 2 a tie resolved to class 0 (wrong)
    assert out["num_masked"].item() == 2
    reference = F.cross_entropy(logits.view(-1, 2), labels.view(-1))  # ignore_index=-100 by default
    assert out["loss"].item() == pytest.approx(reference.item())


def test_mlm_loss_ignore_everything_and_gradient() -> None:
    logits = torch.randn(2, 5, 7, requires_grad=True)
    out = mlm_loss(logits, torch.full((2, 5), IGNORE_INDEX))
    assert out["loss"].item() == 0.0 and not torch.isnan(out["loss"]) and out["num_masked"] == 0
    out["loss"].backward()  # graph kept (no unused-parameter errors under DDP)
    assert torch.equal(logits.grad, torch.zeros_like(logits))
    labels = torch.full((2, 5), IGNORE_INDEX)
    labels[0, 1] = 3
    logits.grad = None
    mlm_loss(logits, labels)["loss"].backward()
    assert logits.grad[0, 1].abs().sum() > 0 and logits.grad[1].abs().sum() == 0
    with pytest.raises(ValueError, match="do not match"):
        mlm_loss(torch.zeros(2, 5, 7), torch.zeros(2, 4, dtype=torch.long))


# ----------------------------------------------------------------------------------------------- MVM


def test_masked_mean() -> None:
    values = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    mask = torch.tensor([[True, False], [False, True]])
    assert masked_mean(values, mask).item() == 2.5
    loss_map = torch.arange(8.0).view(1, 1, 2, 2, 2)  # [b, t, gh, gw, d]
    patch_mask = torch.tensor([[[[True, False], [False, False]]]])
    assert masked_mean(loss_map, patch_mask).item() == 0.5  # mean of [0, 1]
    empty = torch.ones(2, 2, requires_grad=True)
    out = masked_mean(empty, torch.zeros(2, 2, dtype=torch.bool))
    assert out.item() == 0.0
    out.backward()
    assert torch.equal(empty.grad, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="more dimensions"):
        masked_mean(values, mask[None])


# ------------------------------------------------------------------------------------------- downstream


def test_bidirectional_contrastive_hand_computed() -> None:
    scores = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    out = bidirectional_contrastive_loss(scores, temperature=1.0)
    v2t = (math.log(1 + math.exp(-2)) + math.log(2)) / 2
    t2v = math.log(1 + math.exp(-1))
    assert out["loss_v2t"].item() == pytest.approx(v2t, abs=1e-6)
    assert out["loss_t2v"].item() == pytest.approx(t2v, abs=1e-6)
    assert out["loss"].item() == pytest.approx(v2t + t2v, abs=1e-6)  # published: the sum
    assert out["acc_v2t"].item() == 0.5  # row 1 ties; argmax takes the first maximum, column 0: wrong
    assert out["acc_t2v"].item() == 1.0
    mean = bidirectional_contrastive_loss(scores, temperature=1.0, reduction="mean")
    assert mean["loss"].item() == pytest.approx((v2t + t2v) / 2, abs=1e-6)


def test_bidirectional_contrastive_temperature_gradient_validation() -> None:
    scores = torch.eye(4) * 0.5
    assert (
        bidirectional_contrastive_loss(scores, 0.05)["loss"]
        < bidirectional_contrastive_loss(scores, 1.0)["loss"]
    )
    s = torch.zeros(3, 3, requires_grad=True)
    bidirectional_contrastive_loss(s)["loss"].backward()
    assert (s.grad.diagonal() < 0).all() and (s.grad.masked_select(~torch.eye(3, dtype=torch.bool)) > 0).all()
    with pytest.raises(ValueError, match="square"):
        bidirectional_contrastive_loss(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="reduction"):
        bidirectional_contrastive_loss(torch.zeros(2, 2), reduction="max")  # type: ignore[arg-type]


def test_multiple_choice_loss() -> None:
    scores = torch.tensor([[0.0, math.log(3.0), 0.0, 0.0], [2.0, 0.0, 0.0, 0.0]], requires_grad=True)
    label = torch.tensor([1, 3])
    out = multiple_choice_loss(scores, label)
    expected = (-math.log(3 / 6) - math.log(1 / (math.exp(2) + 3))) / 2
    assert out["loss"].item() == pytest.approx(expected, abs=1e-6)
    assert out["acc"].item() == 0.5
    out["loss"].backward()
    assert scores.grad[0, 1] < 0 and scores.grad[1, 3] < 0
    hot = multiple_choice_loss(scores.detach(), label, temperature=0.1)["loss"]
    assert hot > out["loss"]  # the wrong answer of row 1 is punished harder at low temperature
    with pytest.raises(ValueError, match=r"label values must be in \[0, 4\)"):
        multiple_choice_loss(scores, torch.tensor([1, 4]))
    with pytest.raises(ValueError, match=r"scores \[b, o\] and label \[b\]"):
        multiple_choice_loss(scores, torch.tensor([1]))
