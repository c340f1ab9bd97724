"""Pre-training module: VTM + MLM + MVM on the tiny preset, masking strategies, teachers out of checkpoints."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from _videos import make_tokenizer
from violetv2 import VioletModule
from violetv2.callbacks.teachers import MVMTeacherCallback
from violetv2.data.batch import VideoTextBatch
from violetv2.mvm.masking import apply_mask
from violetv2.tasks.pretrain import PretrainModule, SpecialTokens


def _batch(b=4, t=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 40, (b, 10), generator=g)
    ids[:, 0], ids[:, 7], ids[:, 8:] = 2, 3, 0  # [CLS] ... [SEP] [PAD] [PAD]
    mask = (ids != 0).long()
    return VideoTextBatch(video=torch.randn(b, t, 3, 64, 64, generator=g), text_ids=ids, text_mask=mask)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok")
    make_tokenizer(path)
    return str(path)


def _module(tokenizer_dir, **kwargs):
    torch.manual_seed(0)
    defaults = {"preset": "tiny", "mvm_targets": {"hog": 1.0}, "tokenizer": tokenizer_dir, "lr": 1e-3}
    return PretrainModule(**{**defaults, **kwargs})


def test_special_tokens_from_tokenizer_dir(tokenizer_dir):
    special = SpecialTokens(tokenizer_dir)
    assert special.ids == {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
    assert SpecialTokens().mask == 103  # bert-base-uncased ids without loading anything


def test_losses_and_metrics_of_one_batch(tokenizer_dir):
    module = _module(tokenizer_dir, mvm_targets={"hog": 1.0, "pixel": 0.5}, vtm_negatives=None)
    out = module.pretrain_losses(_batch())
    for key in ("loss", "vtm_loss", "vtm_acc", "mlm_loss", "mlm_acc", "mvm_loss", "mvm_hog", "mvm_pixel"):
        assert key in out and torch.isfinite(out[key]), key
    expected = out["vtm_loss"] + out["mlm_loss"] + out["mvm_hog"] + 0.5 * out["mvm_pixel"]
    assert torch.allclose(out["loss"], expected)
    assert set(module.model.mvm_heads) == {"hog", "pixel"}


def test_loss_weights(tokenizer_dir):
    module = _module(tokenizer_dir, loss_weights={"mlm": 0.0, "mvm": 2.0})
    out = module.pretrain_losses(_batch())
    assert torch.allclose(out["loss"], out["vtm_loss"] + 2.0 * out["mvm_loss"])
    with pytest.raises(ValueError, match="loss_weights"):
        _module(tokenizer_dir, loss_weights={"itm": 1.0})


def test_a_few_steps_overfit_a_fixed_batch(tokenizer_dir):
    module = _module(tokenizer_dir, config={"dropout": 0.0, "attention_dropout": 0.0})
    batch = _batch()
    opt = torch.optim.Adam(module.parameters(), lr=1e-3)
    torch.manual_seed(0)
    first = module.pretrain_losses(batch)
    for _ in range(20):
        out = module.pretrain_losses(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert out["mlm_loss"] < first["mlm_loss"] and out["mvm_loss"] < first["mvm_loss"]
    assert out["loss"] < 0.9 * first["loss"]


@pytest.mark.parametrize("strategy", ["random", "blockwise", "attended", "tube", "frame"])
def test_every_masking_strategy_trains(tokenizer_dir, strategy):
    module = _module(tokenizer_dir, masking=[strategy], mask_ratio=0.3)
    batch = _batch()
    mask = module.patch_mask(batch, module.model.backbone.grid(batch.video))
    assert mask.shape == (4, 2, 2, 2) and (mask.flatten(1).sum(1) >= 1).all()
    module.pretrain_losses(batch)["loss"].backward()
    assert module.model.mvm_heads["hog"].conv.weight.grad is not None


def test_learned_mask_token_is_trained(tokenizer_dir):
    module = _module(tokenizer_dir, learned_mask_token=True)
    module.pretrain_losses(_batch())["loss"].backward()
    assert module.mask_token.grad is not None and module.mask_token.grad.abs().sum() > 0


def _count_calls(module):
    """Record the batch size of every Video Swin and fusion call."""
    calls = {"swin": [], "fusion": []}
    bb = module.model.backbone
    bb.video.swin.register_forward_hook(lambda m, args, out: calls["swin"].append(args[0].shape[0]))
    bb.fusion.register_forward_hook(lambda m, args, out: calls["fusion"].append(args[0].shape[0]))
    return calls


def test_one_video_pass_with_published_negatives(tokenizer_dir):
    module = _module(tokenizer_dir)
    calls = _count_calls(module)
    out = module.pretrain_losses(_batch(b=6))
    # one Video Swin pass over the masked clip; one fusion call over min(B, 4) pairs per video
    assert calls == {"swin": [6], "fusion": [6 * 4]}
    assert "vtm_loss" in out and "mlm_loss" in out


def test_vtm_on_unmasked_batches_both_clips(tokenizer_dir):
    module = _module(tokenizer_dir, vtm_on="unmasked")
    calls = _count_calls(module)
    module.pretrain_losses(_batch(b=6))
    assert calls == {"swin": [12], "fusion": [6 + 6 * 4]}
    with pytest.raises(ValueError, match="vtm_on"):
        _module(tokenizer_dir, vtm_on="both")


@pytest.mark.parametrize("vtm_on", ["masked", "unmasked"])
def test_joint_forward_matches_separate_passes(tokenizer_dir, vtm_on):
    """The shared passes give exactly what separate forwards of each pair give (eval mode: no dropout)."""
    module = _module(tokenizer_dir, vtm_on=vtm_on).eval()
    batch = _batch(b=3)
    mask = torch.zeros(3, 2, 2, 2, dtype=torch.bool)
    mask[:, 0, 0, 1] = mask[1, 1, 1, 0] = True
    masked_ids = batch.text_ids.clone()
    masked_ids[:, 2] = 4
    pairs = torch.tensor([[0, 2, 1], [1, 0, 2], [2, 1, 0]])
    masked_video = apply_mask(batch.video, mask, module.cfg.video_stride)
    with torch.no_grad():
        fused, logits = module.joint_forward(batch, masked_video, masked_ids, pairs)
        ref = module.model(masked_video, masked_ids, batch.text_mask)
        vtm_video = masked_video if vtm_on == "masked" else batch.video
        vtm_ids = masked_ids if vtm_on == "masked" else batch.text_ids
        ref_logits = torch.stack(
            [
                module.model.vtm_logits(
                    module.model(vtm_video, vtm_ids[pairs[:, j]], batch.text_mask[pairs[:, j]])
                )
                for j in range(3)
            ],
            dim=1,
        )
    assert torch.allclose(fused.hidden, ref.hidden, atol=1e-5)
    assert torch.allclose(logits, ref_logits, atol=1e-5)


def test_loss_scale_option(tokenizer_dir):
    published = _module(tokenizer_dir, mvm_targets={"pixel": 1.0}).eval()
    mean = _module(tokenizer_dir, mvm_targets={"pixel": 1.0}, loss_scale="mean").eval()
    torch.manual_seed(1)
    a = published.pretrain_losses(_batch())
    torch.manual_seed(1)
    b = mean.pretrain_losses(_batch())
    assert torch.allclose(a["mvm_pixel"] * 3, b["mvm_pixel"], rtol=1e-5)  # published pixel = mean / 3
    assert torch.allclose(a["mlm_loss"], b["mlm_loss"]) and torch.allclose(a["vtm_loss"], b["vtm_loss"])
    with pytest.raises(ValueError, match="loss_scale"):
        _module(tokenizer_dir, loss_scale="sum")


def test_fit_keeps_teacher_out_of_checkpoint_and_restores(tokenizer_dir, tmp_path):
    batches = [_batch(seed=i) for i in range(3)]
    loader = DataLoader(batches, batch_size=None)
    module = _module(tokenizer_dir, mvm_targets={"hog": 1.0})
    trainer = L.Trainer(
        max_steps=3, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path, callbacks=[MVMTeacherCallback()],
    )  # fmt: skip
    trainer.fit(module, loader)
    path = tmp_path / "pre.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["mvm_targets"][0]["name"] == "hog"
    assert all(k.startswith(("model.", "mask_token")) for k in ckpt["state_dict"])
    restored = VioletModule.load_from_checkpoint(path)
    assert type(restored) is PretrainModule and set(restored.model.mvm_heads) == {"hog"}
    for k, v in module.state_dict().items():
        assert torch.equal(v, restored.state_dict()[k]), k


def test_vtm_in_both_directions_constrains_the_per_video_offset(tokenizer_dir):
    """The published VTM softmax runs over each video's texts, so adding a constant to every score of one video
    changes nothing; text-to-video ranking depends on exactly that offset, which ``vtm_direction="both"`` trains."""
    from violetv2.tasks.losses import bidirectional_contrastive_loss, pairs_to_matrix, vtm_loss, vtm_pairs

    pairs = vtm_pairs(4, None)  # own text first, then the others in index order
    logits = torch.randn(4, 4, generator=torch.Generator().manual_seed(0))
    scores = pairs_to_matrix(logits, pairs)
    assert all(scores[i, pairs[i, k]] == logits[i, k] for i in range(4) for k in range(4))
    assert torch.equal(scores.diagonal(), logits[:, 0])
    offset = torch.tensor([[3.0], [-2.0], [0.5], [1.0]])  # one constant per video
    v2t = [vtm_loss(x)["loss"] for x in (logits, logits + offset)]
    both = [bidirectional_contrastive_loss(pairs_to_matrix(x, pairs), reduction="mean")["loss"]
            for x in (logits, logits + offset)]  # fmt: skip
    assert torch.allclose(v2t[0], v2t[1]) and not torch.allclose(both[0], both[1])
    with pytest.raises(ValueError, match="all 4 x 4"):
        pairs_to_matrix(logits[:, :2], pairs[:, :2])

    module = _module(tokenizer_dir, vtm_negatives=None, vtm_direction="both")
    torch.manual_seed(1)
    out = module.pretrain_losses(_batch())
    assert {"vtm_loss", "vtm_loss_t2v", "vtm_loss_v2t", "vtm_acc", "vtm_acc_t2v"} <= set(out)
    assert torch.allclose(out["vtm_loss"], (out["vtm_loss_t2v"] + out["vtm_loss_v2t"]) / 2)
    published = _module(tokenizer_dir, vtm_negatives=None)
    torch.manual_seed(1)
    assert torch.allclose(published.pretrain_losses(_batch())["vtm_loss"], out["vtm_loss_v2t"], atol=1e-6)
    with pytest.raises(ValueError, match="vtm_negatives=None"):
        _module(tokenizer_dir, vtm_direction="both")
    with pytest.raises(ValueError, match="vtm_direction"):
        _module(tokenizer_dir, vtm_negatives=None, vtm_direction="text_to_video")
