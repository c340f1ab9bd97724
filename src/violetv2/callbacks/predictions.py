"""``violet predict`` output: one JSON line per prediction, and the data/model consistency checks of the CLI.

:class:`JsonlPredictionWriter` collects the records every task module's ``predict_step`` returns
(``{"id", "prediction", "score"}`` dicts) and writes them, one JSON object per line, to
``<log dir>/predictions.jsonl`` (``<log dir>`` = the logger's directory, else the trainer's
``default_root_dir``). In multi-GPU runs every rank writes ``predictions.rank<k>.jsonl``.

:func:`check_data_model` compares a DataModule with the task module it feeds before the first step (a tokenizer
whose ids do not fit the embedding table, more frames than the temporal table, a frame size the spatial table
cannot cover), naming both values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter

BERT_VOCAB = 30522

__all__ = [
    "DataModelCheck",
    "JsonlPredictionWriter",
    "check_data_model",
    "data_answer_vocab",
    "data_num_answers",
    "data_tokenizer",
]


class JsonlPredictionWriter(BasePredictionWriter):
    """Write ``predict_step`` records as JSON lines at the end of ``violet predict``.

    Args:
        path: Output file; relative paths are under the log directory (default ``predictions.jsonl``).
    """

    def __init__(self, path: str = "predictions.jsonl") -> None:
        super().__init__(write_interval="epoch")
        self.path = path
        self.written: Path | None = None

    def output_path(self, trainer: L.Trainer) -> Path:
        """Where this rank writes (``predictions.rank<k>.jsonl`` when several ranks predict)."""
        path = Path(self.path)
        if not path.is_absolute():
            path = Path(trainer.log_dir or trainer.default_root_dir) / path
        if trainer.world_size > 1:
            path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
        return path

    def write_on_epoch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: Any, batch_indices: Any
    ) -> None:
        path = self.output_path(trainer)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as f:
            for record in _records(predictions):
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.written = path


def _records(predictions: Any) -> list[dict[str, Any]]:
    """Flatten ``predict`` output: [loader][batch][record] or [batch][record] -> records."""
    out: list[dict[str, Any]] = []
    stack = [predictions]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            out.append(item)
        elif isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
        elif item is not None:
            raise TypeError(f"predict_step returned {type(item).__name__}; expected dicts or lists of dicts")
    return out


def data_tokenizer(datamodule: Any) -> str | None:
    """The tokenizer a DataModule encodes with, as a name or directory (``None``: bert-base-uncased ids).

    Used as the ``compute_fn`` of the CLI link ``data -> model.init_args.tokenizer``.
    """
    name = getattr(datamodule, "tokenizer_name", None)
    if name is None and getattr(datamodule, "synthetic", False):
        name = str(Path(datamodule.synthetic_root) / "tokenizer")
    return name


def data_num_answers(datamodule: Any) -> int | None:
    """Classes of the DataModule's answer classifier (``None`` when it builds none)."""
    if not getattr(datamodule, "classifier", False):
        return None
    return int(datamodule.num_answers)


def data_answer_vocab(datamodule: Any) -> list[str] | None:
    """The DataModule's classifier answers in class order (``None`` when it builds none)."""
    if not getattr(datamodule, "classifier", False):
        return None
    return list(datamodule.answer_vocab)


def check_data_model(datamodule: Any, module: Any, tokenizer: Any = None) -> None:
    """Fail with a message naming both values when ``datamodule`` cannot feed ``module``.

    Args:
        datamodule: A violetv2 DataModule (other DataModules are skipped).
        module: A :class:`~violetv2.VioletModule`.
        tokenizer: The data's tokenizer (default: loaded from the DataModule's tokenizer name).

    Raises:
        ValueError: Token ids beyond the model's vocabulary, more frames than its temporal table, a frame
            size whose token grid exceeds its spatial table, or texts longer than its position table.
    """
    cfg = getattr(module, "cfg", None)
    if cfg is None or not hasattr(datamodule, "num_frames"):
        return
    problems = []
    frames, size = int(datamodule.num_frames), int(datamodule.image_size)
    if frames > cfg.max_frames:
        problems.append(f"data.num_frames={frames} > model config max_frames={cfg.max_frames}")
    if size % cfg.video_stride:
        problems.append(f"data.image_size={size} is not a multiple of the model's stride {cfg.video_stride}")
    grid = size // cfg.video_stride
    if cfg.spatial_pos == "flat" and grid * grid > cfg.max_grid**2:
        problems.append(
            f"data.image_size={size} gives a {grid}x{grid} token grid, more than the model's "
            f"max_grid={cfg.max_grid} table ({cfg.max_grid}x{cfg.max_grid}); set model config "
            "spatial_pos: interpolate or a matching image_size"
        )
    length = _text_positions(datamodule)
    if length is not None and length > cfg.max_text_positions:
        problems.append(
            f"data texts of {length} ids > model config max_text_positions={cfg.max_text_positions}"
        )
    tok = tokenizer if tokenizer is not None else _load(datamodule)
    if tok is not None and len(tok) > cfg.vocab_size:
        problems.append(
            f"data tokenizer {data_tokenizer(datamodule) or 'bert-base-uncased'!r} has {len(tok)} tokens > "
            f"model config vocab_size={cfg.vocab_size} (preset {cfg.name!r})"
        )
    if problems:
        raise ValueError(
            f"{type(datamodule).__name__} does not fit {type(module).__name__}: " + "; ".join(problems)
        )


def _text_positions(datamodule: Any) -> int | None:
    length = getattr(datamodule, "max_text_len", None)
    if length is None:
        return None
    extra = {"mc_prompt": 3, "qa": 5}.get(getattr(datamodule, "text_layout", None) or "", 0)
    return int(length) + extra


def _load(datamodule: Any) -> Any:
    tok = getattr(datamodule, "tokenizer", None)
    if tok is not None and not isinstance(tok, str):
        return tok
    name = data_tokenizer(datamodule)
    if name in (None, "bert-base-uncased"):
        return range(BERT_VOCAB)  # only its size is needed: no download
    if not Path(name).exists():
        return None  # a hub name: checked where the data loads it
    from ..data.text import load_tokenizer

    return load_tokenizer(name)


class DataModelCheck(L.Callback):
    """Runs :func:`check_data_model` once the DataModule is set up (its tokenizer loaded), before any step."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.datamodule is not None:
            check_data_model(trainer.datamodule, pl_module)
