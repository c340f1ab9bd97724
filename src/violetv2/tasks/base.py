"""VioletModule: the LightningModule every violetv2 task subclasses.

It owns the model (backbone + heads), the optimiser (AdamW with decoupled parameter groups: no weight decay on
biases and LayerNorm weights, a learning-rate multiplier for the video encoder), the schedule (linear warm-up
then linear decay to zero) and weight loading: foreign checkpoints (the public release, VIOLET v1, Video Swin,
BERT) at construction, and :meth:`VioletModule.load_from_checkpoint` for anything this library saved, which
restores the task class that saved it.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Any

import lightning as L
import torch
from torch import nn

from ..config import VioletConfig
from ..models.violet import VioletModel

__all__ = ["VioletModule", "param_groups", "warmup_linear_decay"]

log = logging.getLogger(__name__)

_NO_INIT = {"init_checkpoint": None, "video_swin_checkpoint": None, "bert_checkpoint": None}


class VioletModule(L.LightningModule):
    """Base LightningModule: a :class:`~violetv2.models.VioletModel` plus optimisation and weight loading.

    Args:
        preset: Architecture preset (``violetv2-base``, ``violet-v1-base``, ``tiny``).
        config: Overrides of :class:`~violetv2.config.VioletConfig` fields (e.g. ``{"num_frames": 5}``).
        vtm_head: Build the video-text matching head.
        mlm_head: Build the masked-language-model head.
        mvm_heads: MVM heads to build by target name (e.g. ``["sif"]``).
        task_embedding: Build the ``[10, d]`` task-token table (the release's ``emb_task``).
        num_answers: Build an answer classifier with this many classes (open-ended QA).
        lr: Peak learning rate (published: 5e-5 pre-training, 2e-5 fine-tuning).
        weight_decay: AdamW weight decay (published 1e-3), not applied to biases and LayerNorm weights.
        betas: AdamW betas (published (0.9, 0.98)).
        warmup_ratio: Fraction of the training steps spent warming up linearly (published 0.1).
        video_lr_mult: Learning-rate multiplier for the video encoder (Video Swin + token projection).
        init_checkpoint: Weights to start from: a VIOLETv2 / VIOLET v1 release file, or a violetv2 checkpoint.
        video_swin_checkpoint: Official Video Swin (Kinetics) checkpoint to initialise the video encoder.
        bert_checkpoint: Hugging Face BERT (name, local ``from_pretrained`` directory or state-dict file) to
            initialise the text embeddings, fusion transformer and MLM head.
    """

    def __init__(
        self,
        preset: str = "tiny",
        config: dict[str, Any] | None = None,
        vtm_head: bool = True,
        mlm_head: bool = True,
        mvm_heads: list[str] | None = None,
        task_embedding: bool = False,
        num_answers: int | None = None,
        lr: float = 5e-5,
        weight_decay: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.98),
        warmup_ratio: float = 0.1,
        video_lr_mult: float = 1.0,
        init_checkpoint: str | None = None,
        video_swin_checkpoint: str | None = None,
        bert_checkpoint: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.cfg = VioletConfig.from_name(preset, **(config or {}))
        self.model = self.build_model()
        if not 0.0 <= warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio}")
        self._load_initial_weights(init_checkpoint, video_swin_checkpoint, bert_checkpoint)

    def build_model(self) -> VioletModel:
        """The model this task trains (subclasses add heads here, before initial weights are loaded)."""
        hp = self.hparams
        return VioletModel(
            self.cfg,
            vtm=hp.vtm_head,
            mlm=hp.mlm_head,
            mvm=tuple(hp.mvm_heads or ()),
            task_embedding=hp.get("task_embedding", False),
            num_answers=hp.get("num_answers"),
        )

    # ------------------------------------------------------------------ weights
    def _load_initial_weights(self, init: str | None, video_swin: str | None, bert: str | None) -> None:
        from .. import convert

        if video_swin:
            convert.load_video_swin_into(self.model, video_swin)
        if bert:
            convert.load_bert_into(self.model, bert)
        if init:
            convert.load_into(self.model, init)

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls,
        checkpoint_path: str | os.PathLike,
        map_location: Any = None,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> VioletModule:
        """Restore a module saved by this library, as the task class that saved it.

        ``VioletModule.load_from_checkpoint(path)`` returns e.g. a pre-training module when that is what was
        saved. The file is read with ``weights_only=True``; initial-weight paths recorded in the hyperparameters
        are not re-read (the checkpoint holds the trained weights).
        """
        peek = torch.load(checkpoint_path, map_location="cpu", weights_only=True, mmap=True)
        target = _saved_class(peek, cls, str(checkpoint_path))
        del peek
        kwargs = {**_NO_INIT, **kwargs}
        loader = super(VioletModule, target).load_from_checkpoint.__func__  # type: ignore[attr-defined]
        return loader(
            target, checkpoint_path, map_location=map_location, strict=strict, weights_only=True, **kwargs
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["violetv2"] = {"class_path": f"{type(self).__module__}.{type(self).__qualname__}"}

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        groups = param_groups(self, hp.weight_decay, hp.lr, hp.video_lr_mult)
        opt = torch.optim.AdamW(groups, lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_linear_decay(total, hp.warmup_ratio))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def param_groups(model: nn.Module, weight_decay: float, lr: float, video_lr_mult: float = 1.0) -> list[dict]:
    """AdamW groups: {video encoder, rest} x {decay, no decay}; biases and LayerNorm weights get no decay.

    The video encoder is every parameter under a ``backbone.video`` module. Frozen parameters
    (``requires_grad=False``) are left out.
    """
    no_decay = {id(m.weight) for m in model.modules() if isinstance(m, nn.LayerNorm)}
    video = {id(p) for n, p in model.named_parameters() if ".backbone.video." in f".{n}"}
    buckets: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = not (name.endswith(".bias") or id(p) in no_decay)
        buckets.setdefault((id(p) in video, decay), []).append(p)
    return [
        {
            "params": params,
            "weight_decay": weight_decay if decay else 0.0,
            "lr": lr * (video_lr_mult if is_video else 1.0),
        }
        for (is_video, decay), params in sorted(buckets.items())
    ]


def warmup_linear_decay(total_steps: int, warmup_ratio: float) -> Any:
    """LambdaLR factor: 0 -> 1 linearly over ``warmup_ratio * total_steps`` steps, then 1 -> 0 linearly."""
    warmup = int(total_steps * warmup_ratio)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(total_steps - warmup, 1))

    return factor


def _saved_class(checkpoint: dict[str, Any], requested: type, path: str) -> type:
    """The class recorded in a checkpoint, checked to be a subclass of the one ``load_from_checkpoint`` was
    called on (so a file cannot make us import arbitrary code)."""
    class_path = checkpoint.get("violetv2", {}).get("class_path")
    if class_path is None:
        if "state_dict" not in checkpoint:
            raise ValueError(
                f"{path} is not a Lightning checkpoint; foreign weights go through violetv2.convert "
                "(e.g. `violet convert` or VioletModule(init_checkpoint=...))"
            )
        return requested
    module_name, _, name = class_path.rpartition(".")
    if not module_name.startswith("violetv2.") and module_name not in sys.modules:
        raise ValueError(
            f"{path} was saved by {class_path!r}; import {module_name!r} first (only violetv2 modules are "
            "imported automatically), or call load_from_checkpoint on that class"
        )
    target = getattr(importlib.import_module(module_name), name)
    if not (isinstance(target, type) and issubclass(target, requested)):
        raise TypeError(f"{path} holds a {class_path}, which is not a {requested.__qualname__}")
    return target
