"""Pre-training with VTM + MLM + MVM (the VIOLETv2 recipe and its masked-visual-modeling study).

One training step (as the published ``VIOLET_Pretrain.forward`` + ``Agent_Pretrain.step``):

1. MVM targets from the *unmasked* clip (frozen teachers under ``no_grad``, see :mod:`violetv2.mvm.targets`);
2. a patch mask per sample from the configured strategies (``attended`` runs an extra no-grad pass to get
   the attention every video patch receives), and the masked text (15% of the non-special tokens ->
   ``[MASK]``);
3. ONE Video Swin pass, over the masked clip (patches zeroed in the normalised frame, or a learned token);
4. ONE fusion call over every VTM pair of the masked clip and masked text: each video with its own text
   (the matched pair) and ``vtm_negatives`` other in-batch texts (published: ``min(B, 4) - 1``), reusing the
   clip's video tokens; VTM is cross-entropy at temperature 0.05 over each video's pairs, and MLM + MVM read
   the fused output of the matched pairs (the published code runs the matched pairs through fusion twice,
   once for MLM/MVM and once among the VTM pairs; one run gives the same numbers in eval mode and one
   dropout draw instead of two in training);
5. ``loss = w_vtm * vtm + w_mlm * mlm + w_mvm * mvm`` (published: equal weights), every loss at its
   published scale (``loss_scale``).

``vtm_direction="both"`` (needs ``vtm_negatives=None``, all in-batch pairs) adds the text-to-video direction:
the published loss normalises each video's scores over texts only, so a per-video offset of the VTM logit costs
nothing in training, yet it decides text-to-video rankings (which video a text retrieves); "both" averages the
softmax over texts for each video and over videos for each text on the ``B x B`` score matrix.

``vtm_on="unmasked"`` instead scores VTM on the unmasked clip with the unmasked text (the VIOLET v1 habit):
both clips then go through Video Swin in one batched call (2B clips: about twice the Video Swin time and
activation memory of the default), and the B matched masked pairs join the B*O VTM pairs in one fusion call
(B more sequences than the default).

Randomness (masks, MLM positions, VTM negatives) comes from per-sample streams (:mod:`violetv2.rng`) keyed by
the seed, the step and the row's position in the global batch (row ``i`` of rank ``r`` of ``w`` is global row
``r + w * i``, the layout of a ``DistributedSampler``): different on every rank, the same after a resume, the
same when one process runs the whole global batch; validation draws are keyed by
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
from ..models.violet import FusedSequence, VioletModel
from ..mvm.masking import MaskSampler, apply_mask
from ..mvm.targets import MVMTargets, build_targets
from ..rng import SampleStreams, stream_seed
from .base import VioletModule
from .losses import (
    LossScale,
    bidirectional_contrastive_loss,
    check_loss_scale,
    mask_tokens,
    mlm_loss,
    pair_indices,
    pairs_to_matrix,
    vtm_loss,
    vtm_pairs,
)

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
        vtm_direction: ``"video_to_text"`` (published): each video's softmax over its texts; ``"both"``: the
            mean of that and each text's softmax over the batch's videos (the retrieval fine-tuning loss, halved),
            so that the VTM score also ranks videos for a text; needs ``vtm_negatives=None``.
        vtm_on: ``"masked"`` (published): VTM on the masked clip and masked text, sharing the step's single
            Video Swin pass; ``"unmasked"``: VTM on the unmasked clip and text (both clips in one batched Video
            Swin call: ~2x its time and activation memory).
        loss_scale: ``"published"``: every MVM target reduced as the public code does (e.g. the SIF feature
            L1 summed over 1024 channels / 3, pixel mean / 3); ``"mean"``: plain masked-element means. VTM and
            MLM are cross-entropy means under both.
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
        vtm_on: Literal["masked", "unmasked"] = "masked",
        vtm_direction: Literal["video_to_text", "both"] = "video_to_text",
        loss_scale: LossScale = "published",
        tokenizer: str | None = None,
        rng_seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        if vtm_on not in ("masked", "unmasked"):
            raise ValueError(f"vtm_on must be 'masked' or 'unmasked', got {vtm_on!r}")
        if vtm_direction not in ("video_to_text", "both"):
            raise ValueError(f"vtm_direction must be 'video_to_text' or 'both', got {vtm_direction!r}")
        if vtm_direction == "both" and vtm_negatives is not None:
            raise ValueError(
                f"vtm_direction='both' scores every text against every video of the batch: it needs "
                f"vtm_negatives=None (all in-batch texts), got vtm_negatives={vtm_negatives}"
            )
        check_loss_scale(loss_scale)
        self.mvm_targets: MVMTargets = build_targets(
            mvm_targets or {"sif": 1.0}, mvm_target_options, loss_scale
        )
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

        Row ``i`` of rank ``r`` of ``w`` is global position ``r + w * i`` (unique whatever the ranks' batch
        sizes; a ``DistributedSampler`` hands rank ``r`` exactly those rows of the global batch). Outside the
        context (e.g. a direct :meth:`pretrain_losses` call) draws come from the global RNG.
        """
        rank, world = self._rank_and_world()
        positions = [rank + world * i for i in range(batch_size)]
        self._streams = SampleStreams(self._seed(), context, positions)
        try:
            yield self._streams
        finally:
            self._streams = None

    def _rank_and_world(self) -> tuple[int, int]:
        trainer = self._trainer
        return (0, 1) if trainer is None else (trainer.global_rank, trainer.world_size)

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
    def vtm_pairs(self, batch_size: int) -> Tensor | None:
        """``[b, o]`` text indices per video (own text first, then negatives), ``None`` when VTM is off."""
        if self.loss_weights["vtm"] <= 0 or batch_size < 2:
            return None
        return vtm_pairs(
            batch_size, self.hparams.vtm_negatives, generator=self._generators("vtm"), device=self.device
        )

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
        grid = self.model.backbone.grid(batch.video)
        targets = self.mvm_targets.compute(batch.video)
        mask = self.patch_mask(batch, grid)
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
        return self.masked_losses(batch, targets, mask, masked_ids, labels, self.vtm_pairs(len(batch)))

    def masked_losses(
        self,
        batch: VideoTextBatch,
        targets: dict[str, Tensor],
        mask: Tensor,
        masked_ids: Tensor,
        labels: Tensor,
        pairs: Tensor | None,
    ) -> dict[str, Tensor]:
        """The losses of one step for given masks: the part of :meth:`pretrain_losses` after the draws.

        Args:
            batch: The unmasked batch.
            targets: MVM targets of the unmasked clip by target name.
            mask: ``[b, t, gh, gw]`` bool patch mask.
            masked_ids: ``[b, l]`` text ids with ``[MASK]`` at the MLM positions.
            labels: ``[b, l]`` MLM labels (-100 where nothing is predicted).
            pairs: ``[b, o]`` VTM pairs of :func:`vtm_pairs` (``None``: no VTM).
        """
        masked_video = apply_mask(batch.video, mask, self.cfg.video_stride, self.mask_token)
        fused, vtm_logits = self.joint_forward(batch, masked_video, masked_ids, pairs)
        out: dict[str, Tensor] = {}
        if vtm_logits is not None and self.hparams.get("vtm_direction") == "both":
            scores = pairs_to_matrix(vtm_logits, pairs)
            vtm = bidirectional_contrastive_loss(scores, self.hparams.vtm_temperature, reduction="mean")
            vtm["acc"] = vtm.pop("acc_v2t")
            out.update({f"vtm_{k}": v for k, v in vtm.items()})
        elif vtm_logits is not None:
            vtm = vtm_loss(vtm_logits, self.hparams.vtm_temperature)
            out.update({f"vtm_{k}": v for k, v in vtm.items()})
        out.update({f"mlm_{k}": v for k, v in mlm_loss(self.model.mlm_logits(fused), labels).items()})
        preds = self.mvm_targets.predict(self.model.mvm_heads, fused.video_patches)
        mvm = self.mvm_targets.losses(preds, targets, mask)
        out.update({k if k.startswith("mvm_") else f"mvm_{k}": v for k, v in mvm.items()})
        out["loss"] = sum(
            self.loss_weights[k] * out[f"{k}_loss"] for k in ("vtm", "mlm", "mvm") if f"{k}_loss" in out
        )
        return out

    def joint_forward(
        self, batch: VideoTextBatch, masked_video: Tensor, masked_ids: Tensor, pairs: Tensor | None
    ) -> tuple[FusedSequence, Tensor | None]:
        """One Video Swin call and one fusion call for the whole step.

        Returns the fused matched pairs of the masked clip and masked text (MLM / MVM input) and the
        ``[b, o]`` raw VTM logits (``None`` without ``pairs``).
        """
        bb = self.model.backbone
        b, grid = len(batch), bb.grid(batch.video)
        unmasked = pairs is not None and self.hparams.vtm_on == "unmasked"
        clips = torch.cat([masked_video, batch.video]) if unmasked else masked_video
        tokens = bb.encode_video(clips)  # [b or 2b, t * (1 + gh*gw), d]
        frames = tokens.shape[1] // (1 + grid[0] * grid[1])

        def fuse(video_tokens: Tensor, ids: Tensor, text_mask: Tensor) -> Tensor:
            return bb.fuse(video_tokens, ids, text_mask, frames=frames, grid=grid).hidden

        if pairs is None:
            return FusedSequence(fuse(tokens, masked_ids, batch.text_mask), frames, grid), None
        vid, txt = pair_indices(pairs)
        if unmasked:  # rows: b masked matched pairs, then the b * o unmasked VTM pairs
            hidden = fuse(
                torch.cat([tokens[:b], tokens[b:][vid]]),
                torch.cat([masked_ids, batch.text_ids[txt]]),
                torch.cat([batch.text_mask, batch.text_mask[txt]]),
            )
            matched, vtm_hidden = hidden[:b], hidden[b:]
        else:  # rows: the b * o pairs, row-major; row i * o is video i with its own (masked) text
            vtm_hidden = fuse(tokens[vid], masked_ids[txt], batch.text_mask[txt])
            matched = vtm_hidden[:: pairs.shape[1]]
        vtm = FusedSequence(vtm_hidden, frames, grid)
        return FusedSequence(matched, frames, grid), self.model.vtm_logits(vtm).view(pairs.shape)

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
