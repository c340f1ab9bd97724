"""violetv2.inference: inputs of every kind, failures reported, VideoIndex, and task methods equal to the task
modules' own evaluation code on the same clips (tiny preset, synthetic benchmark)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

from violetv2.data.dataset import VideoTextDataset, collate
from violetv2.data.readers import read_annotations
from violetv2.data.text import load_tokenizer
from violetv2.inference import Preprocessing, VideoIndex
from violetv2.inference.api import MissingHeadError
from violetv2.tasks.pretrain import PretrainModule
from violetv2.tasks.retrieval import RetrievalModule

QUERIES = ["an orange square changes colour", "a circle vanishes", "the triangle turns green"]


@pytest.fixture(scope="module")
def test_videos(bench) -> list[Path]:
    return [Path(bench.videos) / r.video for r in read_annotations("umt_ret_json", str(bench.ret_test))]


def _module(cls, bench, seed=0, **kwargs):
    torch.manual_seed(seed)
    config = {"dropout": 0.0, "attention_dropout": 0.0, "initializer_range": 0.1}
    return cls(preset="tiny", tokenizer=str(bench.tokenizer), config=config, **kwargs).eval()


@pytest.fixture(scope="module")
def retrieval(bench):
    return _module(RetrievalModule, bench)


def _write_gif(path: Path, frames: int = 6) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("gif", rate=8)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "rgb8"
        for i in range(frames):
            img = np.zeros((32, 48, 3), np.uint8)
            img[..., 0], img[8:20, 10:30, 1] = 40 * i, 255
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(stream.encode())
    return path


def _dataset(bench, fmt, path, num_clips=1):
    tokenizer = load_tokenizer(str(bench.tokenizer))
    records = read_annotations(fmt, str(path))
    return VideoTextDataset(
        records,
        bench.videos,
        tokenizer,
        num_frames=4,
        image_size=64,
        max_text_len=25,
        train=False,
        num_clips=num_clips,
    )


# ---------------------------------------------------------------------------------------------- inputs


def test_every_input_kind_gives_the_same_clip(bench, test_videos, tmp_path):
    pre = Preprocessing(num_frames=4, image_size=64)
    path = test_videos[0]
    from_path = pre(path)
    assert from_path.shape == (1, 4, 3, 64, 64) and from_path.dtype == torch.float32
    assert torch.equal(pre(str(path)), from_path)
    assert torch.equal(pre(path.read_bytes()), from_path)
    # uint8 frames: every decoded frame, sampled with the model's sampling
    with av.open(str(path)) as c:
        frames = torch.stack([torch.from_numpy(f.to_ndarray(format="rgb24")) for f in c.decode(video=0)])
    uint8 = frames.permute(0, 3, 1, 2).contiguous()
    assert torch.allclose(pre(uint8), from_path, atol=1e-6)
    gif = pre(_write_gif(tmp_path / "a.gif"))
    assert gif.shape == (1, 4, 3, 64, 64)
    from PIL import Image

    Image.fromarray(np.full((40, 50, 3), 200, np.uint8)).save(tmp_path / "still.png")
    still = pre(tmp_path / "still.png")
    assert still.shape == (1, 4, 3, 64, 64) and torch.equal(still[0, 0], still[0, 3])  # frame repeated
    with pytest.raises(ValueError, match="uint8"):
        pre(uint8.float())


def test_preprocessing_equals_the_evaluation_dataset(bench):
    """The same decoder and transform calls as the dataset in evaluation mode: bit-identical clips."""
    for transform in ("eval", "pad_square"):
        data = _dataset(bench, "umt_ret_json", bench.ret_test, num_clips=2)
        from violetv2.data.transforms import build_transform

        data.transform = build_transform(transform, 64)
        pre = Preprocessing(num_frames=4, image_size=64, transform=transform, num_clips=2)
        sample = data[0]
        assert torch.equal(pre(Path(bench.videos) / data.records[0].video), sample["video"])


def test_preprocessing_is_validated():
    with pytest.raises(ValueError, match="transform='crop'"):
        Preprocessing(transform="crop")
    with pytest.raises(ValueError, match=r"unknown preprocessing keys \['frames'\]"):
        Preprocessing.from_dict({"frames": 4}, "x/config.json")


# ---------------------------------------------------------------------------------------------- retrieval


@pytest.mark.parametrize("num_clips", [1, "all"])
def test_retrieve_equals_the_retrieval_test_step(bench, retrieval, num_clips):
    """Scores of model.retrieve == the score matrix RetrievalModule's test path computes on the same clips
    (also with the release's multi-clip testing: every clip encoded, tokens averaged)."""
    data = _dataset(bench, "umt_ret_json", bench.ret_test, num_clips=num_clips)
    retrieval.preprocessing = {**retrieval.preprocessing.to_dict(), "num_clips": num_clips}
    batch = collate([data[i] for i in range(len(data))])
    retrieval.on_test_epoch_start()
    with torch.no_grad():
        retrieval.test_step(batch, 0)
        expected, video_ids, _ = retrieval.all_pair_scores()
    texts = [r.text for r in data.records]
    paths = [Path(bench.videos) / v for v in video_ids]
    hits = retrieval.retrieve(texts, paths, top_k=None, progress=False)
    assert hits.scores.shape == expected.shape == (4, 4)
    assert torch.allclose(hits.scores, expected, atol=1e-6, rtol=0)
    best = hits.scores.argmax(1)
    firsts = [h for h in hits if h.rank == 1]
    assert [h.video for h in firsts] == [str(paths[j]) for j in best.tolist()]
    assert [h.query for h in firsts] == texts and len(hits) == 16
    assert batch.num_clips == (1 if num_clips == 1 else 2)
    retrieval.preprocessing = {**retrieval.preprocessing.to_dict(), "num_clips": 1}


def test_device_and_dtype_are_the_users(bench, test_videos):
    module = _module(RetrievalModule, bench)
    single = module.retrieve(QUERIES, test_videos, progress=False).scores
    module.double()
    double = module.retrieve(QUERIES, test_videos, progress=False)
    assert double.scores.dtype == torch.float32 and torch.allclose(double.scores, single, atol=1e-5)
    assert module.index_videos(test_videos, progress=False).tokens.dtype == torch.float64


def test_retrieve_reports_bad_files_and_scores_the_rest(bench, retrieval, test_videos, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_text("not a video")
    videos = [test_videos[0], bad, test_videos[1], tmp_path / "missing.mp4", test_videos[2], test_videos[3]]
    # batch_size 2 with 2 workers: the list is decoded in background processes, batch by batch
    hits = retrieval.retrieve(QUERIES, videos, top_k=2, batch_size=2, num_workers=2, progress=False)
    assert [(f.video, f.index) for f in hits.failures] == [(str(bad), 1), (str(tmp_path / "missing.mp4"), 3)]
    assert "no such file" in hits.failures[1].reason
    assert hits.scores.shape == (3, 4) and len(hits) == 6
    assert {h.video_index for h in hits} <= {0, 2, 4, 5}
    alone = retrieval.retrieve(QUERIES, test_videos, top_k=2, progress=False)
    assert torch.equal(alone.scores, hits.scores)
    rows = hits.to_rows()
    assert rows[0].keys() == {"query", "video", "score", "rank", "video_index"}
    assert "unreadable: " + str(bad) in hits.table()


def test_video_index_saved_and_reloaded_gives_identical_scores(bench, retrieval, test_videos, tmp_path):
    index = retrieval.index_videos(test_videos + [tmp_path / "gone.mp4"], progress=False)
    assert len(index) == 4 and index.failures[0].index == 4
    path = index.save(tmp_path / "videos.index.safetensors")
    loaded = VideoIndex.load(path)
    assert loaded.names == index.names and loaded.failures == index.failures
    a = retrieval.retrieve(QUERIES, index, top_k=3)
    b = retrieval.retrieve(QUERIES, loaded, top_k=3)
    assert torch.equal(a.scores, b.scores) and a == b
    other = _module(RetrievalModule, bench, seed=1)
    with pytest.raises(ValueError, match="another video encoder"):
        other.retrieve(QUERIES, loaded)


def test_decoded_batches_and_tensors_are_accepted(bench, retrieval, test_videos):
    pre = retrieval.preprocessing
    clips = torch.cat([pre(v) for v in test_videos])  # [4, t, c, h, w], preprocessed
    from_paths = retrieval.retrieve(QUERIES, test_videos, progress=False).scores
    assert torch.equal(retrieval.retrieve(QUERIES, clips).scores, from_paths)
    with pytest.raises(ValueError, match="decoded batch must be"):
        retrieval.retrieve(QUERIES, torch.zeros(2, 4, 3, 32, 32))


def test_zero_shot_retrieve_on_a_pretraining_module(bench, test_videos):
    module = _module(PretrainModule, bench, mvm_targets={"hog": 1.0})
    hits = module.retrieve(QUERIES[:1], test_videos, top_k=2, progress=False)
    view = module.task_view("retrieval")
    assert isinstance(view, RetrievalModule) and view.model is module.model
    assert len(hits) == 2 and hits[0].rank == 1 and hits[0].score >= hits[1].score


def test_methods_name_the_heads_a_module_has(bench, retrieval, test_videos):
    with pytest.raises(MissingHeadError, match="caption needs the MLM head; this RetrievalModule has: vtm"):
        retrieval.caption(test_videos[:1])
    with pytest.raises(MissingHeadError, match="has: vtm"):
        retrieval.answer(test_videos[:1], ["what shape is it ?"])


def test_inference_keeps_the_module_training_mode(retrieval, test_videos):
    retrieval.train()
    retrieval.retrieve(QUERIES[:1], test_videos[:2], progress=False)
    assert retrieval.training
    retrieval.eval()


def test_training_after_inference_works(retrieval, test_videos):
    """Tensors memoised during inference_mode must not leak into a later training step."""
    from violetv2.models import video_swin

    for obj in vars(video_swin).values():  # start cold: the memoised tensors are made under inference_mode
        if callable(getattr(obj, "cache_clear", None)):
            obj.cache_clear()
    retrieval.retrieve(QUERIES[:1], test_videos[:1], progress=False)
    video = torch.randn(2, 4, 3, 64, 64)
    ids = torch.randint(5, 100, (2, 6))
    retrieval.train()
    fused = retrieval.model(video, ids, torch.ones_like(ids))
    retrieval.model.vtm_logits(fused).sum().backward()
    assert retrieval.model.vtm_head.fc2.weight.grad is not None
    retrieval.zero_grad()
    retrieval.eval()
