"""Retrieval ranks and accuracy: hand-made matrices with ties, duplicates removed by sample index."""

from __future__ import annotations

import pytest
import torch

from violetv2.metrics import AccuracyMetric, RetrievalMetrics, recall_at_k, retrieval_metrics, retrieval_ranks
from violetv2.metrics.accuracy import accuracy

# 3 texts x 4 videos; texts 1 and 2 are both captions of video 1, videos 2 and 3 have no caption.
SCORES = torch.tensor(
    [
        [0.9, 0.9, 0.1, 0.0],  # text 0 -> video 0: video 1 ties with it          -> rank 2
        [0.5, 0.2, 0.2, 0.7],  # text 1 -> video 1: videos 0, 3 beat it, 2 ties   -> rank 4
        [0.9, 0.8, 0.1, 0.8],  # text 2 -> video 1: video 0 beats it, 3 ties      -> rank 3
    ]
)
TEXT_TO_VIDEO = torch.tensor([0, 1, 1])
# video 0: best caption text 0 (0.9), text 2 ties with it                          -> rank 2
# video 1: best caption text 2 (0.8), text 0 beats it (0.9); text 1 is a positive  -> rank 2


def test_ranks_by_hand_with_ties_both_directions():
    t2v, v2t = retrieval_ranks(SCORES, TEXT_TO_VIDEO)
    assert t2v.tolist() == [2, 4, 3]
    assert v2t.tolist() == [2, 2]


def test_metrics_by_hand():
    out = retrieval_metrics(SCORES, TEXT_TO_VIDEO, ks=(1, 2, 5))
    assert out["t2v_R@1"] == 0.0
    assert out["t2v_R@2"] == pytest.approx(100 / 3)
    assert out["t2v_R@5"] == 100.0
    assert out["t2v_MdR"] == 3.0 and out["t2v_MnR"] == 3.0
    assert out["v2t_R@1"] == 0.0 and out["v2t_R@2"] == 100.0
    assert out["v2t_MdR"] == 2.0 and out["v2t_MnR"] == 2.0


def test_even_count_median_is_the_mean_of_the_middle_ranks():
    scores = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # ranks 1 (text 0 -> 0) and 2 (text 1 -> 1)
    out = retrieval_metrics(scores, torch.tensor([0, 1]), directions=("t2v",))
    assert out["t2v_MdR"] == 1.5 and "v2t_R@1" not in out


def test_constant_scores_get_the_worst_rank():
    scores = torch.zeros(4, 4)
    t2v, v2t = retrieval_ranks(scores, torch.arange(4))
    assert t2v.tolist() == [4] * 4 and v2t.tolist() == [4] * 4
    assert recall_at_k(scores, torch.arange(4))["R@1"] == 0.0


def test_without_ties_ranks_equal_the_sorted_position_protocol():
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(12, 5, generator=g)
    text_to_video = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 4, 4])
    t2v, v2t = retrieval_ranks(scores, text_to_video)
    for i in range(12):  # position of the positive in the sorted videos
        order = scores[i].argsort(descending=True).tolist()
        assert t2v[i] == order.index(int(text_to_video[i])) + 1
    for v in range(5):  # best position of any of its captions among all texts, other captions removed
        order = [j for j in scores[:, v].argsort(descending=True).tolist()]
        own = [j for j in order if text_to_video[j] == v]
        others_above = order.index(own[0])
        assert v2t[v] == others_above + 1


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="NaN"):
        retrieval_ranks(torch.tensor([[float("nan"), 0.0]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="text_to_video"):
        retrieval_ranks(SCORES, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="index the 4 videos"):
        retrieval_ranks(SCORES, torch.tensor([0, 1, 4]))


def _target(text_video, video_index):
    return torch.as_tensor(text_video)[:, None] == torch.as_tensor(video_index)[None, :]


def test_retrieval_metric_blocks_duplicates_and_pair_form():
    metric = RetrievalMetrics(ks=(1, 2, 5))
    # the score matrix in two row blocks and shuffled columns; text 1 sent twice (a padded duplicate)
    cols = torch.tensor([2, 0, 3, 1])
    for rows in ([0, 1], [1, 2]):
        rows = torch.tensor(rows)
        block = SCORES[rows][:, cols]
        metric.update(block, rows + 10, cols + 100, _target(TEXT_TO_VIDEO[rows], cols))
    got = metric.compute()
    want = retrieval_metrics(SCORES, TEXT_TO_VIDEO, ks=(1, 2, 5))
    assert got.keys() == want.keys()
    for k in want:
        assert got[k].item() == pytest.approx(want[k])
    # flat pairs, in any order, give the same
    pair = RetrievalMetrics(ks=(1, 2, 5))
    t, v = torch.meshgrid(torch.arange(3), torch.arange(4), indexing="ij")
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(1))
    t, v = t.reshape(-1)[perm], v.reshape(-1)[perm]
    pair.update(SCORES[t, v], t, v, TEXT_TO_VIDEO[t] == v)
    assert {k: x.item() for k, x in pair.compute().items()} == pytest.approx(want)
    metric.reset()
    with pytest.raises(ValueError, match="no scored pairs"):
        metric.compute()


def test_retrieval_metric_missing_pairs_and_positives_are_errors():
    metric = RetrievalMetrics()
    metric.update(SCORES[:, :3], torch.arange(3), torch.arange(3), _target(TEXT_TO_VIDEO, torch.arange(3)))
    metric.update(SCORES[:1, 3:], torch.arange(1), torch.tensor([3]), torch.tensor([[False]]))
    with pytest.raises(ValueError, match="never scored"):
        metric.compute()
    metric = RetrievalMetrics()
    metric.update(SCORES, torch.arange(3), torch.arange(4), torch.zeros(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="exactly one"):
        metric.compute()


def test_accuracy_counts_unanswerable_as_wrong_and_dedups():
    preds = torch.tensor([3, 1, -100, 2])
    target = torch.tensor([3, 2, -100, 2])  # the -100 target is wrong even though pred is -100
    assert accuracy(preds, target) == 50.0
    metric = AccuracyMetric()
    metric.update(preds[:3], target[:3], torch.tensor([0, 1, 2]))
    metric.update(preds[2:], target[2:], torch.tensor([2, 3]))  # index 2 repeated (padding)
    assert metric.compute().item() == 50.0
    # repeated correct rows would inflate a plain mean: 3 / 5 -> 60 %
    metric.update(preds[:1].repeat(5), target[:1].repeat(5), torch.zeros(5, dtype=torch.long))
    assert metric.compute().item() == 50.0


def test_accuracy_from_scores_and_errors():
    metric = AccuracyMetric()
    metric.update(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1]), torch.tensor([5, 6]))
    assert metric.compute().item() == 50.0
    with pytest.raises(ValueError, match="index"):
        metric.update(torch.tensor([1]), torch.tensor([1]), torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="integer"):
        metric.update(torch.tensor([1]), torch.tensor([1]), torch.tensor([1.0]))
