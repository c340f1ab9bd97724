import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from violetv2 import VioletModule
from violetv2.tasks.base import param_groups, warmup_linear_decay


class MatchingModule(VioletModule):
    """A minimal task: push matched-pair VTM logits up (stands in for the real task modules)."""

    def training_step(self, batch, batch_idx):
        video, ids = batch
        fused = self.model(video, ids, torch.ones_like(ids))
        loss = -torch.nn.functional.logsigmoid(self.model.vtm_logits(fused)).mean()
        self.log("loss", loss)
        return loss


def _loader():
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(
        torch.randn(4, 2, 3, 64, 64, generator=g), torch.randint(5, 1000, (4, 6), generator=g)
    )
    return DataLoader(data, batch_size=2)


def test_param_groups_split_decay_and_video_lr():
    module = VioletModule(preset="tiny", video_lr_mult=0.1, lr=1e-4)
    groups = param_groups(module.model, 1e-3, 1e-4, 0.1)
    by_id = {id(p): g for g in groups for p in g["params"]}
    m = module.model
    assert by_id[id(m.backbone.fusion.layers[0].attn_norm.weight)]["weight_decay"] == 0.0
    assert by_id[id(m.backbone.fusion.layers[0].query.bias)]["weight_decay"] == 0.0
    assert by_id[id(m.backbone.fusion.layers[0].query.weight)]["weight_decay"] == 1e-3
    assert by_id[id(m.backbone.video.swin.layers[0].blocks[0].attn.qkv.weight)]["lr"] == pytest.approx(1e-5)
    assert by_id[id(m.mlm_head.dense.weight)]["lr"] == pytest.approx(1e-4)
    assert sum(len(g["params"]) for g in groups) == len(list(m.parameters()))


def test_warmup_then_linear_decay():
    f = warmup_linear_decay(100, 0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.5) and f(100) == 0.0


def test_fit_save_and_restore_subclass(tmp_path):
    L.seed_everything(0)
    module = MatchingModule(preset="tiny", config={"num_frames": 2}, lr=1e-3)
    trainer = L.Trainer(
        max_steps=4,
        accelerator="cpu",
        default_root_dir=tmp_path,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    before = module.model.vtm_head.fc2.weight.detach().clone()
    trainer.fit(module, _loader())
    assert not torch.equal(before, module.model.vtm_head.fc2.weight)
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)
    restored = VioletModule.load_from_checkpoint(path)
    assert type(restored) is MatchingModule and restored.cfg.num_frames == 2
    for k, v in module.model.state_dict().items():
        assert torch.equal(v, restored.model.state_dict()[k]), k
    # learning-rate schedule was stepped per optimizer step
    assert trainer.lr_scheduler_configs[0].scheduler.last_epoch == 4


def test_bad_arguments_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="unknown preset"):
        VioletModule(preset="nope")
    with pytest.raises(ValueError, match="warmup_ratio"):
        VioletModule(warmup_ratio=1.5)
    with pytest.raises(ValueError, match="unknown MVM head"):
        VioletModule(mvm_heads=["smell"])
    junk = tmp_path / "junk.ckpt"
    torch.save({"weights": torch.zeros(1)}, junk)
    with pytest.raises(ValueError, match="not a Lightning checkpoint"):
        VioletModule.load_from_checkpoint(junk)
