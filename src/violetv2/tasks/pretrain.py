"""Pre-training with VTM + MLM + MVM (the VIOLETv2 recipe and its masked-visual-modeling study).

One training step:

1. MVM targets from the *unmasked* clip (frozen teachers under ``no_grad``, see :mod:`violetv2.mvm.targets`);
2. a patch mask per sample from the configured strategies (``attended`` runs an extra no-grad pass to get
   the attention every video patch receives);
3. VTM on the unmasked clip: each video with its own text and ``vtm_negatives`` other in-batch texts
   (published: ``min(B, 4) - 1``), cross-entropy at temperature 0.05;
4. MLM + MVM on one forward of the masked clip (patches zeroed in the normalised frame, or a learned token)
   with the masked text (15% of the non-special tokens -> ``[MASK]``);
5. ``loss = w_vtm * vtm + w_mlm * mlm + w_mvm * mvm`` (published: equal weights).

Randomness (masks, MLM positions, VTM negatives) comes from per-sample streams (:mod:`violetv2.rng`) keyed by
the seed, the step and the row's position in the global batch: different on every rank, the same after a
resume, the same when one process runs the whole global batch; validation draws are keyed by
``(dataloader_idx, batch_idx)`` and so are the same every epoch. The global torch RNG (dropout) is re-seeded
from ``(seed, rank, step)`` at every training batch, so it too differs between ranks and repeats on resume.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Hashable, Iterator
from typing import Any, Literal

import torch
from einops import rearrange
from torch import Tensor, nn

from ..data.batch import VideoTextBatch
from ..models.violet import VioletModel
from ..mvm.masking import MaskSampler, apply_mask
from ..mvm.targets import MVMTargets, build_targets
from ..rng import SampleStreams, stream_seed
from .base import VioletModule
from .losses import mask_tokens, mlm_loss, pair_indices, vtm_loss, vtm_pairs

__all__ = ["PretrainModule", "SpecialTokens"]

BERT_SPECIAL = {"pad": 0, "unk": 100, "cls": 101, "sep": 102, "mask": 103}


class SpecialTokens:
    """Ids of ``[PAD] [UNK] [CLS] [SEP] [MASK]``: bert-base-uncased's, or read from a tokenizer directory."""

    def __init__(self, tokenizer: str | None = None) -> None:
        ids = dict(BERT_SPECIAL)
        if tokenizer is not None:
            from ..data.text import load_tokenizer

            tok = load_tokenizer(tokenizer)
            ids = {
                "pad": tok.pad_token_id,
                "unk": tok.unk_token_id,
                "cls": tok.cls_token_id,
                "sep": tok.sep_token_id,
                "mask": tok.mask_token_id,
            }
            if any(v is None for v in ids.values()):
                raise ValueError(f"tokenizer {tokenizer!r} lacks a special token: {ids}")
        self.ids = ids

    @property
    def mask(self) -> int:
        return self.ids["mask"]

    @property
    def all(self) -> list[int]:
        return sorted(set(self.ids.values()))


class PretrainModule(VioletModule):
    """VTM + MLM + MVM pre-training.

    Args:
        mvm_targets: MVM targets and their loss weights, e.g. ``{"sif": 1.0}`` (published default) or
            ``{"sif": 1.0, "hog": 1.0}``. Names: pixel, hog, depth, flow, vq, sif, clip, vidswin.
        mvm_target_options: Constructor options per target, e.g. ``{"sif": {"model_name_or_path": dir}}``.
        masking: Masking strategies, one drawn per sample: random, blockwise, attended, tube, frame.
        mask_ratio: Fraction of video patches masked per sample (published range 0.15-0.3).
        learned_mask_token: Write a learned RGB token into masked patches instead of zeros.
        vtm_negatives: In-batch negatives per video (published 3, i.e. ``min(B, 4) - 1``); ``None`` = all.
        vtm_temperature: Temperature of the VTM softmax (published 0.05).
        mlm_prob: Fraction of text tokens masked (published 0.15).
        mlm_mode: ``mask`` (always ``[MASK]``, published) or ``bert`` (80/10/10).
        loss_weights: Weights of ``vtm``, ``mlm``, ``mvm`` (published: all 1).
        tokenizer: Tokenizer name or directory to read special-token ids from (default: bert-base-uncased ids).
        rng_seed: Seed of the per-sample random streams (masks, MLM positions, VTM negatives); ``None``: the
            run's ``seed_everything`` seed (``PL_GLOBAL_SEED``), else 0.
        **kwargs: :class:`~violetv2.VioletModule` arguments (preset, config, lr, ...).
    """

    def __init__(
        self,
        mvm_targets: dict[str, float] | None = None,
        mvm_target_options: dict[str, dict[str, Any]] | None = None,
        masking: list[str] | None = None,
        mask_ratio: float = 0.15,
        learned_mask_token: bool = False,
        vtm_negatives: int | None = 3,
        vtm_temperature: float = 0.05,
        mlm_prob: float = 0.15,
        mlm_mode: Literal["mask", "bert"] = "mask",
        loss_weights: dict[str, float] | None = None,
        tokenizer: str | None = None,
        rng_seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.mvm_targets: MVMTargets = build_targets(mvm_targets or {"sif": 1.0}, mvm_target_options)
        kwargs.setdefault("mvm_heads", None)
        super().__init__(**kwargs)
        self.mask_sampler = MaskSampler(masking or ["random", "blockwise"], mask_ratio)
        self.mask_token = nn.Parameter(torch.zeros(3)) if learned_mask_token else None
        weights = {"vtm": 1.0, "mlm": 1.0, "mvm": 1.0, **(loss_weights or {})}
        if set(weights) != {"vtm", "mlm", "mvm"}:
            raise ValueError(f"loss_weights keys must be vtm, mlm, mvm; got {sorted(weights)}")
        self.loss_weights = weights
        self._special: SpecialTokens | None = None
        self._step_start = self._step_end = None
        self._streams: SampleStreams | None = None

    @property
    def special(self) -> SpecialTokens:
        """Special-token ids, read from ``tokenizer`` on first use (it may be generated after ``__init__``)."""
        if self._special is None:
            self._special = SpecialTokens(self.hparams.tokenizer)
        return self._special

    # ------------------------------------------------------------------ randomness
    @contextlib.contextmanager
    def random_streams(self, batch_size: int, *context: Hashable) -> Iterator[SampleStreams]:
        """Draw this batch's masks, MLM positions and negatives from per-sample streams keyed by ``context``.

        Row ``i`` of rank ``r`` is global position ``r * batch_size + i``. Outside the context (e.g. a direct
        :meth:`pretrain_losses` call) draws come from the global RNG.
        """
        start = self.global_rank * batch_size
        self._streams = SampleStreams(self._seed(), context, range(start, start + batch_size))
        try:
            yield self._streams
        finally:
            self._streams = None

    def _seed(self) -> int:
        seed = self.hparams.get("rng_seed")
        return int(os.environ.get("PL_GLOBAL_SEED", 0)) if seed is None else int(seed)

    def _generators(self, purpose: str) -> list[torch.Generator] | None:
        """Per-row generators of the current batch for ``purpose``, or ``None`` (global RNG)."""
        return None if self._streams is None else self._streams.generators(purpose)

    def _train_step_index(self, batch_idx: int) -> int:
        """Batches started since the run began (Lightning checkpoints it, so a resume continues it)."""
        trainer = self._trainer
        return batch_idx if trainer is None else int(trainer.fit_loop.epoch_loop.total_batch_idx)

    def build_model(self) -> VioletModel:
        model = super().build_model()
        model.mvm_heads = self.mvm_targets.build_heads(self.cfg)
        return model

    # ------------------------------------------------------------------ losses
    def vtm(self, batch: VideoTextBatch, video_tokens: Tensor, grid: tuple[int, int]) -> dict[str, Tensor]:
        """VTM over each video's own text and in-batch negatives (video tokens encoded once)."""
        b, t = batch.video.shape[:2]
        pairs = vtm_pairs(
            b, self.hparams.vtm_negatives, generator=self._generators("vtm"), device=self.device
        )
        vid, txt = pair_indices(pairs)
        fused = self.model.backbone.fuse(
            video_tokens[vid], batch.text_ids[txt], batch.text_mask[txt], frames=t, grid=grid
        )
        logits = self.model.vtm_logits(fused).view(pairs.shape)
        return vtm_loss(logits, self.hparams.vtm_temperature)

    def patch_mask(self, batch: VideoTextBatch, grid: tuple[int, int]) -> Tensor:
        """``[b, t, gh, gw]`` patch mask; ``attended`` asks the fusion transformer where attention goes."""
        b, t = batch.video.shape[:2]
        attention = None
        if "attended" in self.mask_sampler.strategies:
            with torch.no_grad():
                fused = self.model.backbone(
                    batch.video, batch.text_ids, batch.text_mask, return_attention=True
                )
            video_att = rearrange(fused.attention[:, : fused.num_video_tokens], "b (t n) -> b t n", t=t)
            attention = video_att[:, :, 1:]  # patch tokens only
        return self.mask_sampler(
            b, t, *grid, attention=attention, generator=self._generators("mask"), device=self.device
        )

    def pretrain_losses(self, batch: VideoTextBatch) -> dict[str, Tensor]:
        """Every loss and metric of one batch (``"loss"`` is the weighted total)."""
        video = batch.video
        grid = self.model.backbone.grid(video)
        targets = self.mvm_targets.compute(video)
        mask = self.patch_mask(batch, grid)
        out: dict[str, Tensor] = {}

        if self.loss_weights["vtm"] > 0 and len(batch) > 1:
            tokens = self.model.backbone.encode_video(video)
            out.update({f"vtm_{k}": v for k, v in self.vtm(batch, tokens, grid).items()})

        masked_video = apply_mask(video, mask, self.cfg.video_stride, self.mask_token)
        masked_ids, labels = mask_tokens(
            batch.text_ids,
            batch.text_mask,
            mask_token_id=self.special.mask,
            vocab_size=self.cfg.vocab_size,
            special_ids=self.special.all,
            prob=self.hparams.mlm_prob,
            mode=self.hparams.mlm_mode,
            generator=self._generators("mlm"),
        )
        fused = self.model(masked_video, masked_ids, batch.text_mask)
        out.update({f"mlm_{k}": v for k, v in mlm_loss(self.model.mlm_logits(fused), labels).items()})
        preds = self.mvm_targets.predict(self.model.mvm_heads, fused.video_patches)
        mvm = self.mvm_targets.losses(preds, targets, mask)
        out.update({k if k.startswith("mvm_") else f"mvm_{k}": v for k, v in mvm.items()})
        out["loss"] = sum(
            self.loss_weights[k] * out[f"{k}_loss"] for k in ("vtm", "mlm", "mvm") if f"{k}_loss" in out
        )
        return out

    # ------------------------------------------------------------------ Lightning hooks
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # what still draws from the global RNG (dropout, drop-path) gets a stream of its own per rank and step
        torch.manual_seed(
            stream_seed(self._seed(), "torch", self.global_rank, self._train_step_index(batch_idx))
        )
        self._step_start = time.perf_counter()
        if self._step_end is not None:  # time between the previous step's end and now: waiting for data
            self.log("perf/data_time", self._step_start - self._step_end, batch_size=1)

    def training_step(self, batch: VideoTextBatch, batch_idx: int) -> Tensor:
        with self.random_streams(len(batch), "train", self._train_step_index(batch_idx)):
            out = self.pretrain_losses(batch)
        b = len(batch)
        self.log_dict({f"train/{k}": v.float() for k, v in out.items() if k != "loss"}, batch_size=b)
        self.log("train/loss", out["loss"], batch_size=b, prog_bar=True)
        self.log("data/skipped", float(batch.skipped), reduce_fx="sum", batch_size=b)
        return out["loss"]

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._step_end = time.perf_counter()
        step = self._step_end - self._step_start
        self.log("perf/step_time", step, batch_size=1)
        self.log("perf/clips_per_s", len(batch) / max(step, 1e-9), batch_size=1, prog_bar=True)

    def validation_step(self, batch: VideoTextBatch, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Losses of one validation batch, logged as ``val/<k>``, or ``val/<source>/<k>`` with several sources.

        ``<source>`` is the key of the source when the validation dataloaders come as a mapping, else its
        index. Masks, MLM positions and negatives depend only on ``(dataloader_idx, batch_idx)`` and the row,
        never on the epoch, so the losses of two epochs are comparable.
        """
        with self.random_streams(len(batch), "val", dataloader_idx, batch_idx):
            out = self.pretrain_losses(batch)
        prefix = f"val/{self._val_source(dataloader_idx)}/" if self._num_val_sources() > 1 else "val/"
        self.log_dict(
            {f"{prefix}{k}": v.float() for k, v in out.items()},
            batch_size=len(batch),
            sync_dist=True,
            add_dataloader_idx=False,
        )

    def _num_val_sources(self) -> int:
        trainer = self._trainer
        return 1 if trainer is None else len(trainer.num_val_batches)

    def _val_source(self, dataloader_idx: int) -> str:
        """The name of validation source ``dataloader_idx``: its key in a mapping of loaders, else the index."""
        loaders = None if self._trainer is None else self._trainer.val_dataloaders
        if isinstance(loaders, dict):
            return str(list(loaders)[dataloader_idx])
        return str(dataloader_idx)
