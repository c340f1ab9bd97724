"""End-of-training report: losses at the start and end, zero-shot text-to-video retrieval, checkpoint path."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import lightning as L
import torch

from ..data.dataset import VideoTextDataset, collate
from ..data.readers import read_annotations
from ..data.text import load_tokenizer
from ..metrics.retrieval import recall_at_k, score_all_pairs

__all__ = ["PretrainReport"]

LOSSES = ("loss", "vtm_loss", "mlm_loss", "mvm_loss")


class PretrainReport(L.Callback):
    """Prints a short table when ``fit`` ends and returns it as :attr:`results`.

    Losses are the mean over the first and the last ``window`` training steps. Zero-shot retrieval scores
    every text-video pair of ``num_clips`` held-out clips with the VTM head (R@1 / R@5 / R@10, chance level
    beside them).

    Args:
        annotations: Retrieval annotations of the held-out clips; default: the synthetic benchmark's
            ``umt/ret_test.json`` under the datamodule's ``synthetic_root``.
        format: Reader of ``annotations`` (see ``violetv2.data.readers``).
        video_root: Where the held-out videos are; default: the synthetic benchmark's ``videos/``.
        num_clips: Held-out clips (one caption each) to rank against each other.
        window: Training steps averaged for the start and end losses.
    """

    def __init__(
        self,
        annotations: str | None = None,
        format: str = "umt_ret_json",
        video_root: str | None = None,
        num_clips: int = 100,
        window: int = 20,
    ) -> None:
        super().__init__()
        self.annotations, self.format, self.video_root = annotations, format, video_root
        self.num_clips, self.window = num_clips, window
        self.history: dict[str, list[float]] = {k: [] for k in LOSSES}
        self.results: dict[str, Any] = {}

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        for key in LOSSES:
            value = trainer.callback_metrics.get(f"train/{key}")
            if value is not None:
                self.history[key].append(float(value))

    def _held_out(self, trainer: L.Trainer) -> tuple[list, Path, Any]:
        dm = trainer.datamodule
        root = Path(getattr(dm, "synthetic_root", "data/synthetic"))
        annotations = self.annotations or str(root / "umt" / "ret_test.json")
        video_root = self.video_root or str(root / "videos")
        records = read_annotations(self.format, annotations)[: self.num_clips]
        tokenizer = getattr(dm, "tokenizer", None) or load_tokenizer(str(root / "tokenizer"))
        return records, Path(video_root), tokenizer

    @torch.no_grad()
    def retrieval(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        """Zero-shot text-to-video recall on the held-out clips."""
        records, video_root, tokenizer = self._held_out(trainer)
        cfg = pl_module.cfg
        data = VideoTextDataset(
            records,
            video_root,
            tokenizer,
            num_frames=getattr(trainer.datamodule, "num_frames", cfg.num_frames),
            image_size=getattr(trainer.datamodule, "image_size", cfg.image_size),
            max_text_len=getattr(trainer.datamodule, "max_text_len", 32),
            train=False,
        )
        batch = collate([data[i] for i in range(len(data))]).to(pl_module.device)
        model = pl_module.model.eval()
        scores = score_all_pairs(model, batch.video, batch.text_ids, batch.text_mask, progress=True)
        return recall_at_k(scores, torch.arange(len(batch), device=scores.device))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        start = {k: statistics.fmean(v[: self.window]) for k, v in self.history.items() if v}
        end = {k: statistics.fmean(v[-self.window :]) for k, v in self.history.items() if v}
        recall = self.retrieval(trainer, pl_module)
        n = self.num_clips
        ckpt = getattr(trainer.checkpoint_callback, "last_model_path", "") or getattr(
            trainer.checkpoint_callback, "best_model_path", ""
        )
        self.results = {"start": start, "end": end, "retrieval": recall, "checkpoint": ckpt}
        lines = [
            "",
            f"violetv2 pre-training report ({trainer.global_step} steps)",
            f"{'loss':<12}{'start':>10}{'end':>10}",
            *[f"{k:<12}{start[k]:>10.4f}{end[k]:>10.4f}" for k in start],
            "",
            f"zero-shot text-to-video retrieval, {n} held-out clips (VTM head)",
            f"{'metric':<12}{'ours':>10}{'chance':>10}",
            *[f"{k:<12}{recall[k]:>9.1f}%{100 * int(k[2:]) / n:>9.1f}%" for k in ("R@1", "R@5", "R@10")],
            f"{'median rank':<12}{recall['MdR']:>10.0f}{(n + 1) / 2:>10.1f}",
            "",
            f"checkpoint: {ckpt or '(none saved)'}",
        ]
        print("\n".join(lines), flush=True)
