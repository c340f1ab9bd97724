"""DataModules on a tiny synthetic benchmark: batch shapes per task family, per-source mixing, exact resume."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from lightning.pytorch.utilities.model_helpers import is_overridden

from violetv2.data.batch import VideoTextBatch
from violetv2.data.datamodules import (
    CaptioningDataModule,
    MixedLoader,
    MultipleChoiceDataModule,
    PretrainDataModule,
    QADataModule,
    ResumableSampler,
    RetrievalDataModule,
    Source,
)
from violetv2.data.readers import read_annotations
from violetv2.data.shards import write_shards
from violetv2.data.synthetic import generate
from violetv2.data.transforms import PadSquareTransform

CLIPS = 8  # train clips; the generator adds max(4, 8 // 8) = 4 test clips
COMMON = {"batch_size": 2, "num_workers": 0, "pin_memory": False, "num_frames": 3, "image_size": 32}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("synthetic")
    generate(path, num_train=CLIPS, num_test=4, workers=0)
    return path


@pytest.fixture(scope="module")
def images(root: Path) -> Source:
    """Six JPEG images with a CC3M-layout caption file."""
    folder = root / "cc3m"
    folder.mkdir(exist_ok=True)
    lines = []
    for i in range(6):
        with av.open(str(folder / f"{i:08d}.jpg"), "w", format="mjpeg") as out:
            stream = out.add_stream("mjpeg", rate=1)
            stream.width, stream.height, stream.pix_fmt = 40, 36, "yuvj420p"
            pixels = np.full((36, 40, 3), 30 * i, np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
            out.mux(stream.encode())
        lines.append(f"a picture number {i}\thttp://example.com/{i}.jpg")
    (folder / "train.tsv").write_text("\n".join(lines) + "\n")
    return Source("cc3m_tsv", str(folder / "train.tsv"), str(folder))


def module(cls: type, root: Path, **kw):
    dm = cls(synthetic=True, synthetic_root=str(root), synthetic_clips=CLIPS, **{**COMMON, **kw})
    dm.prepare_data()
    dm.setup("fit")
    return dm


def first(loader) -> VideoTextBatch:
    return next(iter(loader))


def check_common(batch: VideoTextBatch, length: int, frames: int = 3) -> None:
    assert isinstance(batch, VideoTextBatch)
    assert batch.video.shape == (2, frames, 3, 32, 32) and batch.video.dtype == torch.float32
    assert batch.text_ids.shape == batch.text_mask.shape == (2, length)
    assert len(batch.sample_ids) == 2


def test_pretrain_family(root: Path) -> None:
    dm = module(PretrainDataModule, root)
    batch = first(dm.train_dataloader())
    check_common(batch, 32)
    assert not batch.is_image.any()
    assert len(dm.train_dataloader()) == CLIPS // 2
    check_common(first(dm.val_dataloader()[0]), 32)


def test_retrieval_family(root: Path) -> None:
    dm = module(RetrievalDataModule, root)
    check_common(first(dm.train_dataloader()), 25)
    check_common(first(dm.test_dataloader()[0]), 25)


def test_multiple_choice_family(root: Path) -> None:
    dm = module(MultipleChoiceDataModule, root)  # VTM head: MSRVTT-MC-layout synthetic file
    batch = first(dm.train_dataloader())
    check_common(batch, 25)
    assert batch.option_ids.shape == (2, 5, 25) and batch.label.shape == (2,)
    assert ((batch.label >= 0) & (batch.label < 5)).all() and batch.index.shape == (2,)
    assert not dm.datasets["train"][0].shuffle_options
    shuffled = module(MultipleChoiceDataModule, root, shuffle_options=True)
    assert shuffled.datasets["train"][0].shuffle_options and shuffled.datasets["test"][0].shuffle_options


def test_prompt_multiple_choice_family(root: Path) -> None:
    dm = module(MultipleChoiceDataModule, root, benchmark="tgif_action")
    assert dm.max_text_len == 100 and dm.text_layout == "mc_prompt"
    assert isinstance(dm.datasets["train"][0].transform, PadSquareTransform)
    assert isinstance(dm.datasets["test"][0].transform, PadSquareTransform)
    batch = first(dm.train_dataloader())
    check_common(batch, 103)
    tok = dm.tokenizer
    at_mask = batch.text_ids == tok.mask_token_id
    assert (at_mask.sum(1) == 1).all() and batch.option_ids is None
    digits = tok.convert_tokens_to_ids([str(i) for i in range(5)])
    assert batch.answer_ids[at_mask].tolist() == [digits[i] for i in batch.label.tolist()]


def test_qa_family(root: Path) -> None:
    dm = module(QADataModule, root)
    batch = first(dm.val_dataloader()[0])
    check_common(batch, 30)  # L + 5
    assert batch.answer_ids.shape == (2, 30) and dm.num_answers == 0 and batch.label is None
    assert ((batch.answer_ids != -100).sum(1) == 1).all()  # single-piece answers: the [MASK] is labelled
    assert all(isinstance(a, str) and a for a in batch.answers)


@pytest.mark.parametrize("preset", ["tgif_frame", "lsmdc_fib"])
def test_synthetic_answers_are_single_vocabulary_entries(root: Path, preset: str) -> None:
    dm = module(QADataModule, root, benchmark=preset)
    for loader in (dm.train_dataloader(), dm.test_dataloader()[0]):
        for batch in loader:
            assert ((batch.answer_ids != -100).sum(1) == 1).all(), batch.answers


def test_fill_blank_family(root: Path) -> None:
    dm = module(QADataModule, root, benchmark="lsmdc_fib")
    batch = first(dm.test_dataloader()[0])
    check_common(batch, 25)
    at_mask = batch.text_ids == dm.tokenizer.mask_token_id
    assert batch.answer_ids[at_mask].tolist() == dm.tokenizer.convert_tokens_to_ids(batch.answers)


def test_qa_classifier_vocabulary(root: Path) -> None:
    dm = module(QADataModule, root, classifier=True, answer_vocab_size=5)
    assert dm.num_answers == 5 and len(set(dm.answer_vocab)) == 5
    answers = [r.answer for r in dm.sources["train"][0].records()]
    counts = [answers.count(a) for a in dm.answer_vocab]
    assert counts == sorted(counts, reverse=True) and counts[-1] >= max(
        answers.count(a) for a in set(answers) - set(dm.answer_vocab)
    )
    for loader in (dm.train_dataloader(), dm.test_dataloader()[0]):
        for batch in loader:
            expected = [dm.answer_vocab.index(a) if a in dm.answer_vocab else -100 for a in batch.answers]
            assert batch.label.tolist() == expected
            assert batch.text_ids.shape[1] == 25 and batch.answer_ids is None  # the bare question
    assert module(QADataModule, root, classifier=True, benchmark="tgif_frame").answer_vocab_size == 1540


def test_num_answers_links_into_the_model_at_instantiation(root: Path) -> None:
    import lightning as L
    from lightning.pytorch.cli import LightningCLI

    class Head(L.LightningModule):
        def __init__(self, num_answers: int = 0) -> None:
            super().__init__()
            self.num_answers = num_answers

    class CLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            parser.link_arguments("data.num_answers", "model.num_answers", apply_on="instantiate")

    args = ["--data=violetv2.data.datamodules.QADataModule", "--data.synthetic=true",
            f"--data.synthetic_root={root}", f"--data.synthetic_clips={CLIPS}", "--data.classifier=true",
            "--data.num_clips=all", "--data.benchmark=tgif_frame",
            "--trainer.logger=false", "--trainer.enable_checkpointing=false", "--trainer.accelerator=cpu"]  # fmt: skip
    cli = CLI(Head, L.LightningDataModule, subclass_mode_data=True, run=False, args=args)
    assert cli.model.num_answers == cli.datamodule.num_answers > 0
    assert cli.datamodule.num_clips == "all" and cli.datamodule.answer_vocab_size == 1540


def test_multi_clip_testing_and_gpu_normalize(root: Path) -> None:
    dm = module(RetrievalDataModule, root, num_clips="all", gpu_normalize=True)
    test = first(dm.test_dataloader()[0])  # synthetic clips have 16 frames: ceil(16 / 3) = 6 clips each
    assert test.num_clips == 6 and test.video.shape[0] == 12 and test.index.tolist() == [0] * 6 + [1] * 6
    assert test.video.dtype == torch.uint8 and test.clip_valid is None
    assert first(dm.val_dataloader()[0]).num_clips == 1  # validation: one clip, as the release
    assert first(dm.predict_dataloader()[0]).sample_ids == test.sample_ids  # predict: the test sources
    cpu = module(RetrievalDataModule, root, num_clips="all")
    expected = first(cpu.test_dataloader()[0]).video
    moved = dm.on_after_batch_transfer(test, 0).video
    assert moved.dtype == torch.float32 and torch.allclose(moved, expected, atol=1e-5)
    assert is_overridden("on_after_batch_transfer", dm) and not is_overridden("on_after_batch_transfer", cpu)


def test_bad_choices_raise() -> None:
    with pytest.raises(ValueError, match="unknown benchmark"):
        RetrievalDataModule(benchmark="msrvtt")
    with pytest.raises(ValueError, match="unknown eval_transform"):
        RetrievalDataModule(eval_transform="crop")
    with pytest.raises(ValueError, match="num_clips"):
        RetrievalDataModule(num_clips=0)
    assert RetrievalDataModule(benchmark="didemo_ret").max_text_len == 100
    assert RetrievalDataModule(benchmark="didemo_ret", max_text_len=40).max_text_len == 40


def test_captioning_family(root: Path) -> None:
    dm = module(CaptioningDataModule, root)
    check_common(first(dm.train_dataloader()), 25)
    batch = first(dm.test_dataloader()[0])
    assert all(isinstance(refs, list) and refs for refs in batch.answers)


def test_pretrain_mixes_images_and_videos_per_batch(root: Path, images: Source) -> None:
    videos = Source(
        "webvid_csv",
        str(root / "webvid/results_train.csv"),
        str(root / "videos"),
        options={"video_layout": "flat"},
    )
    dm = PretrainDataModule(train=[videos, images], tokenizer=str(root / "tokenizer"), **COMMON)
    dm.setup("fit")
    loader = dm.train_dataloader()
    batches = list(loader)
    kinds = [b.video.shape[1] for b in batches]
    assert len(batches) == len(loader) == CLIPS // 2 + 3
    assert kinds.count(1) == 3 and kinds.count(3) == CLIPS // 2  # image batches are t = 1, never mixed
    assert all(b.is_image.all() == (b.video.shape[1] == 1) for b in batches)
    assert kinds[:2] != [1, 1] and kinds[-2:] != [1, 1]  # image batches spread over the epoch


def test_resumable_sampler_splits_ranks_and_starts_mid_way() -> None:
    shares = [list(ResumableSampler(10, shuffle=True, seed=1, rank=r, world_size=3)) for r in range(3)]
    assert all(len(s) == 4 for s in shares) and set(sum(shares, [])) == set(range(10))
    sampler = ResumableSampler(10, shuffle=True, seed=1)
    full = list(sampler)
    sampler.start = 4
    assert list(sampler) == full[4:]
    sampler.set_epoch(1)
    sampler.start = 0
    assert sorted(sampler) == list(range(10)) and list(sampler) != full


def _mixed_module(root: Path, images: Source, shards: Path) -> PretrainDataModule:
    dm = PretrainDataModule(
        train=[Source(shards=str(shards)), images], tokenizer=str(root / "tokenizer"), **COMMON
    )
    dm.setup("fit")
    return dm


@pytest.fixture(scope="module")
def shards(root: Path) -> Path:
    records = read_annotations("webvid_csv", root / "webvid/results_train.csv", video_layout="flat")
    write_shards(records, root / "videos", root / "shards", samples_per_shard=3, mode="jpeg", num_frames=3)
    return root / "shards"


def test_shard_sources_decode_with_the_task_sample_options(root: Path, tmp_path: Path) -> None:
    records = read_annotations("msrvtt_mc_csv", root / "msrvtt_mc/MSR_MC_train.csv")[:8]
    write_shards(records, root / "videos", tmp_path / "mc", samples_per_shard=4, mode="bytes")
    file_label = {r.sample_id: r.label for r in records}
    kw = {**COMMON, "batch_size": 8, "tokenizer": str(root / "tokenizer")}

    def labels(**extra) -> dict[str, int]:
        dm = MultipleChoiceDataModule(train=[Source(shards=str(tmp_path / "mc"))], **kw, **extra)
        dm.setup("fit")
        batch = next(iter(dm.train_dataloader()))
        assert batch.option_ids.shape[:2] == (8, 5)
        return dict(zip(batch.sample_ids, batch.label.tolist(), strict=True))

    assert labels() == file_label
    shuffled = labels(shuffle_options=True)
    assert shuffled.keys() == file_label.keys() and shuffled != file_label


def test_mixed_loader_resumes_exactly(root: Path, images: Source, shards: Path) -> None:
    full_loader = _mixed_module(root, images, shards).train_dataloader()
    full_loader.set_epoch(1)
    full = [b.sample_ids for b in full_loader]
    for k in (2, 5):
        loader = _mixed_module(root, images, shards).train_dataloader()
        loader.set_epoch(1)
        it = iter(loader)
        head = [next(it).sample_ids for _ in range(k)]
        state = loader.state_dict()
        fresh: MixedLoader = _mixed_module(root, images, shards).train_dataloader()
        fresh.load_state_dict(state)
        assert head + [b.sample_ids for b in fresh] == full


def test_lightning_checkpoint_resume_mid_epoch(
    root: Path, images: Source, shards: Path, tmp_path: Path
) -> None:
    """Lightning saves the train loader's position in the checkpoint and resumes on the next sample."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    class Recorder(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))
            self.seen: list[list[str]] = []

        def training_step(self, batch: VideoTextBatch, batch_idx: int) -> torch.Tensor:
            self.seen.append(list(batch.sample_ids))
            return (self.weight * batch.video.mean()).sum()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    def fit(ckpt: str | None = None) -> Recorder:
        model = Recorder()
        every = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=9, save_top_k=-1, filename="{step}")
        trainer = L.Trainer(
            max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=[every],
            enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, default_root_dir=tmp_path,
        )  # fmt: skip
        trainer.fit(model, datamodule=_mixed_module(root, images, shards), ckpt_path=ckpt)
        return model

    reference = fit()  # 2 epochs of 7 batches; checkpoint after step 9, in the middle of epoch 1
    tail = fit(ckpt=str(tmp_path / "step=9.ckpt"))
    assert len(reference.seen) == 14 and len(tail.seen) == 5
    assert tail.seen == reference.seen[9:]


def test_shard_sources_get_the_text_layout(root: Path, tmp_path: Path) -> None:
    records = read_annotations("tgif_action_csv", root / "tgif_qa/Test_action_question.csv")
    write_shards(records, root / "videos", tmp_path / "tgif", samples_per_shard=2, mode="bytes")
    dm = MultipleChoiceDataModule(
        test=[Source(shards=str(tmp_path / "tgif"))], tokenizer=str(root / "tokenizer"),
        benchmark="tgif_action", **{**COMMON, "eval_batch_size": 2},
    )  # fmt: skip
    dm.setup("test")
    batch = first(dm.test_dataloader()[0])
    assert batch.text_ids.shape == (2, 103) and batch.option_ids is None
    assert ((batch.answer_ids != -100).sum(1) == 1).all()


@pytest.mark.parametrize("workers", [0, 1])
def test_each_epoch_draws_new_frames_and_crops_even_with_persistent_workers(root: Path, workers: int) -> None:
    from lightning.fabric.utilities.data import _set_sampler_epoch

    dm = module(PretrainDataModule, root, num_workers=workers, persistent_workers=True)
    loader = dm.train_dataloader()
    seen: list[dict[str, torch.Tensor]] = []
    for epoch in range(3):
        _set_sampler_epoch(loader, epoch)  # what Lightning's fit loop calls at each epoch start
        seen.append({sid: v for b in loader for sid, v in zip(b.sample_ids, b.video)})
    assert seen[0].keys() == seen[1].keys() == seen[2].keys()
    changed = [sum(not torch.equal(a[k], b[k]) for k in a) for a, b in zip(seen, seen[1:])]
    # the persistent workers' dataset copies never see set_epoch: before the fix every clip repeated exactly
    assert min(changed) >= len(seen[0]) // 2, changed


def test_options_in_the_prompt_get_the_release_length_and_a_cut_is_reported(root: Path, caplog) -> None:
    dm = module(MultipleChoiceDataModule, root, text_layout="mc_prompt")
    # at the generic default of 25 the synthetic prompts would lose their last options
    assert dm.max_text_len == 100
    batch = first(dm.train_dataloader())
    # [SEP] after the question and after each option but the last, and after the [MASK]
    assert all((row == 3).sum() >= 6 for row in batch.text_ids)
    assert not caplog.records
    short = module(MultipleChoiceDataModule, root, text_layout="mc_prompt", max_text_len=12)
    with caplog.at_level("WARNING", logger="violetv2.data.dataset"):
        first(short.train_dataloader())
    cut = [r.getMessage() for r in caplog.records if "max_text_len=12" in r.getMessage()]
    assert len(cut) == 1 and "options after the cut are not seen" in cut[0]
