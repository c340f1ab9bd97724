"""Evaluation on 2 gloo ranks (slow). Retrieval: texts and videos sharded by a padded sampler, each video scored
once by one rank, the gathered score matrix equal to the single-process one. Open QA: the accuracy over
both ranks (a padded duplicate dropped) equals the single-process accuracy."""

import os

import pytest
import torch
import torch.multiprocessing as mp

from violetv2.data.batch import VideoTextBatch
from violetv2.tasks import RetrievalModule

pytestmark = pytest.mark.slow

VIDS = ["v0", "v1", "v0", "v2", "v3"]  # 5 texts, v0 has two captions


def _data():
    g = torch.Generator().manual_seed(0)
    clips = {v: torch.randn(1, 2, 3, 64, 64, generator=g) for v in sorted(set(VIDS))}
    ids = torch.randint(5, 40, (5, 8), generator=g)
    ids[:, 0], ids[:, -1] = 2, 3
    return clips, ids


def _batch(rows, clips, ids):
    return VideoTextBatch(
        torch.cat([clips[VIDS[r]] for r in rows]),
        ids[rows],
        torch.ones_like(ids[rows]),
        video_ids=[VIDS[r] for r in rows],
        index=torch.tensor(rows),
    )


def _module():
    torch.manual_seed(0)
    return RetrievalModule(preset="tiny", config={"num_frames": 2}).eval()


def _worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    clips, ids = _data()
    module = _module()
    shard = [[0, 2, 4], [1, 3, 0]][rank]  # a padded DistributedSampler: text 0 twice
    with torch.no_grad():
        for r in shard:
            module.cache_batch(_batch([r], clips, ids))
        owned = module._own_videos()
        scores, names, positive = module.all_pair_scores()
    torch.save({"scores": scores, "names": names, "positive": positive, "owned": owned}, f"{out}/{rank}.pt")
    torch.distributed.destroy_process_group()


def test_two_ranks_equal_one_process(tmp_path):
    mp.spawn(_worker, args=(2, 29533, str(tmp_path)), nprocs=2, join=True)
    clips, ids = _data()
    module = _module()
    with torch.no_grad():
        module.cache_batch(_batch([0, 1, 2, 3, 4], clips, ids))
        scores, names, positive = module.all_pair_scores()
    parts = [torch.load(tmp_path / f"{r}.pt") for r in range(2)]
    assert sorted(parts[0]["owned"] + parts[1]["owned"]) == names  # every video scored by exactly one rank
    for part in parts:
        assert part["names"] == names and torch.equal(part["positive"], positive)
        assert torch.allclose(part["scores"], scores, atol=1e-6)


# ------------------------------------------------------------------ open-ended QA accuracy over 2 ranks
QA_ROWS = 5


def _qa_data():
    g = torch.Generator().manual_seed(1)
    video = torch.randn(QA_ROWS, 2, 3, 64, 64, generator=g)
    ids = torch.randint(5, 90, (QA_ROWS, 8), generator=g)
    ids[:, 0], ids[:, -1], ids[:, 4] = 101, 102, 103  # [CLS] ... [MASK] ... [SEP] (bert ids, tokenizer=None)
    return video, ids


def _qa_batch(rows, video, ids, answers):
    return VideoTextBatch(
        video[rows], ids[rows], torch.ones_like(ids[rows]), answer_ids=answers[rows], index=torch.tensor(rows)
    )


def _qa_module():
    from violetv2.tasks import OpenQAModule

    torch.manual_seed(0)
    return OpenQAModule(preset="tiny", config={"num_frames": 2}).eval()


def _qa_worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    video, ids = _qa_data()
    answers = torch.load(f"{out}/answers.pt")
    module = _qa_module()
    with torch.no_grad():
        for r in [[0, 2, 4], [1, 3, 0]][rank]:  # a padded DistributedSampler: question 0 twice
            module.test_step(_qa_batch([r], video, ids, answers), 0)
        acc = module.accuracy["test_acc"].compute()
    torch.save(acc, f"{out}/qa{rank}.pt")
    torch.distributed.destroy_process_group()


def test_qa_accuracy_on_two_ranks_equals_one_process(tmp_path):
    video, ids = _qa_data()
    module = _qa_module()
    answers = torch.full_like(ids, -100)
    with torch.no_grad():
        logits, _ = module.forward_batch(_qa_batch(list(range(QA_ROWS)), video, ids, answers))
    pred = logits.argmax(1)
    answers[:, 4] = (pred + 1) % logits.shape[1]  # wrong answers ...
    answers[:3, 4] = pred[:3]  # ... except questions 0, 1, 2, answered right
    answers[3, 4] = -100  # an answer the MLM head cannot produce: always wrong, still counted
    torch.save(answers, tmp_path / "answers.pt")
    expected = 100.0 * 3 / QA_ROWS
    mp.spawn(_qa_worker, args=(2, 29547, str(tmp_path)), nprocs=2, join=True)
    with torch.no_grad():
        module.test_step(_qa_batch(list(range(QA_ROWS)), video, ids, answers), 0)
    assert float(module.accuracy["test_acc"].compute()) == pytest.approx(expected)
    for rank in range(2):  # the duplicate of question 0 (right) is dropped: not 4 of 6
        assert float(torch.load(tmp_path / f"qa{rank}.pt")) == pytest.approx(expected)
