"""End-of-training report: steps run (with a warning when training stopped before ``max_steps``), losses at the
start and end, zero-shot text-to-video retrieval, checkpoint path."""

from __future__ import annotations

import os
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Timer

from ..data.dataset import VideoTextDataset, collate
from ..data.readers import read_annotations
from ..data.text import load_tokenizer
from ..metrics.retrieval import recall_at_k, score_all_pairs

__all__ = ["PretrainReport"]

LOSSES = ("loss", "vtm_loss", "mlm_loss", "mvm_loss")


class PretrainReport(L.Callback):
    """Prints a short table when ``fit`` ends (or is interrupted with Ctrl-C) and returns it as :attr:`results`.

    The first line says how many optimiser steps ran, in how long, and the machine's load average. When training
    ended before the trainer's ``max_steps`` (interrupted, a ``max_time`` limit, ``max_epochs`` reached first, a
    callback such as early stopping) or was bounded by time or epochs instead of steps, the report says so in a
    ``WARNING`` line (also issued as a Python warning): its figures then depend on when training stopped, not on
    the configuration alone.

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
        self._train_start = self._train_end = self._cpu_start = self._cpu_end = None
        self._start_step = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._train_start, self._cpu_start = time.perf_counter(), time.process_time()
        self._start_step = trainer.global_step  # non-zero when resuming from a checkpoint

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._train_end, self._cpu_end = time.perf_counter(), time.process_time()

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
        """Zero-shot text-to-video recall on the held-out clips (``R@k``, ``MdR``, ``MnR``), with the
        video-to-text figures under ``"v2t"``."""
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
        target = torch.arange(len(batch), device=scores.device)
        return {**recall_at_k(scores, target), "v2t": recall_at_k(scores.T, target)}

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self.report(trainer, pl_module)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        # Ctrl-C: Lightning shuts down without on_fit_end; report what was trained so far, flagged as such.
        if isinstance(exception, KeyboardInterrupt) and trainer.is_global_zero and self.history["loss"]:
            if self._train_end is None:
                self._train_end, self._cpu_end = time.perf_counter(), time.process_time()
            self.report(trainer, pl_module, interrupted=True)

    def run_summary(self, trainer: L.Trainer, interrupted: bool = False) -> dict[str, Any]:
        """Steps run against the target, training time and speed, load, and why training stopped early (if it
        did): the ``steps``, ``max_steps``, ``train_seconds``, ``cpu_seconds`` (CPU time of the training process,
        data workers not included), ``steps_per_s``, ``load`` and ``warning`` keys of :attr:`results`."""
        steps, max_steps = trainer.global_step, trainer.max_steps
        end = self._train_end or time.perf_counter()
        seconds = end - self._train_start if self._train_start is not None else None
        cpu = (self._cpu_end or time.process_time()) - self._cpu_start if seconds else None
        ran = steps - self._start_step
        return {
            "steps": steps,
            "max_steps": max_steps if max_steps is not None and max_steps >= 0 else None,
            "train_seconds": seconds,
            "cpu_seconds": cpu,
            "steps_per_s": ran / seconds if seconds else None,
            "load": _load(),
            "warning": stop_warning(trainer, interrupted),
        }

    def report(self, trainer: L.Trainer, pl_module: L.LightningModule, interrupted: bool = False) -> None:
        """Score the held-out clips, fill :attr:`results` and print the table."""
        run = self.run_summary(trainer, interrupted)
        if run["warning"]:
            warnings.warn(run["warning"], stacklevel=2)
        start = {k: statistics.fmean(v[: self.window]) for k, v in self.history.items() if v}
        end = {k: statistics.fmean(v[-self.window :]) for k, v in self.history.items() if v}
        recall = self.retrieval(trainer, pl_module)
        ckpt = getattr(trainer.checkpoint_callback, "last_model_path", "") or getattr(
            trainer.checkpoint_callback, "best_model_path", ""
        )
        self.results = {**run, "start": start, "end": end, "retrieval": recall, "checkpoint": ckpt}
        print("\n".join(self.format_lines()), flush=True)

    def format_lines(self) -> list[str]:
        """The printed report, line by line, from :attr:`results`."""
        r, n = self.results, self.num_clips
        start, end, recall = r["start"], r["end"], r["retrieval"]
        v2t = recall.get("v2t") or {}
        return [
            "",
            f"violetv2 pre-training report ({_steps_line(r)})",
            *([f"WARNING: {r['warning']}"] if r["warning"] else []),
            f"{'loss':<12}{'start':>10}{'end':>10}",
            *[f"{k:<12}{start[k]:>10.4f}{end[k]:>10.4f}" for k in start],
            "",
            f"zero-shot retrieval, {n} held-out clips (VTM head)",
            f"{'metric':<12}{'text->video':>13}{'video->text':>13}{'chance':>10}",
            *[
                f"{k:<12}{recall[k]:>12.1f}%{_pct(v2t.get(k)):>13}{100 * int(k[2:]) / n:>9.1f}%"
                for k in ("R@1", "R@5", "R@10")
            ],
            f"{'median rank':<12}{recall['MdR']:>13.0f}{_num(v2t.get('MdR')):>13}{(n + 1) / 2:>10.1f}",
            "",
            f"checkpoint: {r['checkpoint'] or '(none saved)'}",
        ]


def stop_warning(trainer: L.Trainer, interrupted: bool = False) -> str | None:
    """Why training ended before ``trainer.max_steps`` (or was never bounded by steps); ``None`` when it ran
    exactly the configured steps."""
    steps, max_steps = trainer.global_step, trainer.max_steps
    if max_steps is None or max_steps < 0:
        bound = "a time limit (max_time)" if _timer(trainer) is not None else "epochs (max_epochs)"
        return (
            f"training is bounded by {bound}, not by steps (trainer.max_steps unset): it ran {steps} steps, "
            "a number that depends on the machine's speed and load; set trainer.max_steps for results that do not"
        )
    if steps >= max_steps:
        return None
    short = f"training stopped after {steps} of max_steps={max_steps} steps"
    timer = _timer(trainer)
    if interrupted or trainer.interrupted:
        why = "interrupted (Ctrl-C)"
    elif timer is not None and (timer.time_remaining() or 0.0) <= 0:
        why = f"the time limit max_time={timer._duration:.0f} s was reached"
    elif trainer.max_epochs is not None and 0 <= trainer.max_epochs <= trainer.current_epoch:
        why = f"max_epochs={trainer.max_epochs} was reached first"
    else:
        why = "a callback stopped it (e.g. early stopping)"
    return (
        f"{short}: {why}. These figures are for a partly trained model and are not the configuration's result"
    )


def _timer(trainer: L.Trainer) -> Timer | None:
    timers = [c for c in trainer.callbacks if isinstance(c, Timer) and c._duration is not None]
    return timers[0] if timers else None


def _load() -> tuple[float, int] | None:
    """(1-minute load average, usable cores), or None where the OS has no load average."""
    try:
        return os.getloadavg()[0], len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def _steps_line(r: dict[str, Any]) -> str:
    steps = f"{r['steps']} of {r['max_steps']} steps" if r["max_steps"] else f"{r['steps']} steps"
    if r["train_seconds"] is None:
        return steps
    out = f"{steps} in {_minutes(r['train_seconds'])}"
    if r.get("cpu_seconds") is not None:
        out += f" (CPU {_minutes(r['cpu_seconds'])})"
    if r["steps_per_s"]:
        out += f", {r['steps_per_s']:.2f} steps/s"
    if r["load"]:
        out += f"; load average {r['load'][0]:.1f} on {r['load'][1]} cores"
    return out


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _minutes(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds:02d} s"
