"""Checkpoints that travel: ``save_pretrained`` / ``from_pretrained`` in the Hugging Face Hub's layout.

A saved directory (a Hub model repository as is)::

    config.json          class path, constructor arguments, architecture, heads, preprocessing
    model.safetensors    every weight of the module (``model.*`` and task parameters)
    tokenizer.json, tokenizer_config.json, vocab.txt, ...   the tokenizer (when it could be loaded)
    README.md            a model card

:meth:`PretrainedMixin.from_pretrained` also reads a Lightning ``.ckpt`` saved by any task and a public
release / VIOLET v1 file (converted on the fly); everything loads with safetensors or ``weights_only=True``.
A name that is no local path is looked up on the Hub (``huggingface_hub.snapshot_download``; honours
``HF_HUB_OFFLINE`` and the local cache).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..config import VioletConfig
from .preprocessing import Preprocessing

__all__ = ["CONFIG_NAME", "FORMAT", "PretrainedMixin", "TASKS", "WEIGHTS_NAME", "read_config", "wrap_model"]

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "violetv2"
FORMAT_VERSION = 1
_INIT_PATHS = ("init_checkpoint", "video_swin_checkpoint", "bert_checkpoint")
_HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "README.md"]

TASKS = {
    "base": "violetv2.tasks.base.VioletModule",
    "pretrain": "violetv2.tasks.pretrain.PretrainModule",
    "retrieval": "violetv2.tasks.retrieval.RetrievalModule",
    "multiple_choice": "violetv2.tasks.multiple_choice.MultipleChoiceModule",
    "prompt_choice": "violetv2.tasks.multiple_choice.PromptChoiceModule",
    "open_qa": "violetv2.tasks.qa.OpenQAModule",
    "captioning": "violetv2.tasks.captioning.CaptioningModule",
}
"""Task names accepted by ``from_pretrained(release_file, task=...)`` and ``violet convert --task``."""

_MODEL_CARD = """---
library_name: violetv2
tags:
- video-text
- violetv2
- {task}
---

# {name}

A violetv2 `{cls}` ({preset} preset, heads: {heads}), saved with `save_pretrained`.

```python
from violetv2 import VioletModule

model = VioletModule.from_pretrained("{repo}")
```

Preprocessing (applied by the model's own `retrieve` / `answer` / `caption`): {frames} frames of
{size} px ({transform}), text length {text_len}.
"""


def _class_path(obj: type) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def _jsonable(value: Any, key: str) -> Any:
    """``value`` as JSON (tuples -> lists); anything else is an error naming ``key``."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{key}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"hyperparameter {key!r} = {value!r} ({type(value).__name__}) cannot be saved as JSON")


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The ``config.json`` of a saved directory (or the file itself), checked to be a violetv2 one."""
    path = Path(path)
    file = path / CONFIG_NAME if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no {CONFIG_NAME} (not a directory written by save_pretrained)")
    config = json.loads(file.read_text())
    if config.get("format") != FORMAT:
        raise ValueError(f"{file} is not a violetv2 config (format={config.get('format')!r})")
    if int(config.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(
            f"{file} has format_version {config['format_version']}; this violetv2 reads up to {FORMAT_VERSION}"
        )
    return config


def _tokenizer_files(directory: Path) -> bool:
    return (directory / "tokenizer_config.json").is_file()


class PretrainedMixin:
    """``save_pretrained`` / ``from_pretrained`` for :class:`~violetv2.VioletModule` (mixed into it)."""

    default_max_text_len = 25
    """Text length recorded when neither the data nor the caller says (tasks override it)."""

    # ------------------------------------------------------------------ preprocessing
    @property
    def preprocessing(self) -> Preprocessing:
        """How inputs are prepared for this model: as saved with it, else from the attached datamodule, else
        the architecture's frames / size with this task's text length."""
        saved = self.__dict__.get("_preprocessing")
        if saved is not None:
            return saved
        return _from_datamodule(self) or _default_preprocessing(self)

    @preprocessing.setter
    def preprocessing(self, value: Preprocessing | Mapping[str, Any]) -> None:
        if isinstance(value, Mapping):
            value = Preprocessing.from_dict(dict(value), "preprocessing")
        self.__dict__["_preprocessing"] = value

    # ------------------------------------------------------------------ saving
    def pretrained_config(self, preprocessing: Preprocessing | None = None) -> dict[str, Any]:
        """What ``config.json`` holds: class, constructor arguments, architecture, heads, preprocessing."""
        init_args = {k: v for k, v in dict(self.hparams).items() if not k.startswith("_")}
        init_args.update(dict.fromkeys(_INIT_PATHS))
        if "tokenizer" in init_args:
            init_args["tokenizer"] = None  # restored from the saved files, see from_pretrained
        cfg: VioletConfig = self.cfg
        base = VioletConfig.from_name(cfg.name).to_dict() if cfg.name != "custom" else {}
        init_args["config"] = {k: v for k, v in cfg.to_dict().items() if k != "name" and base.get(k) != v}
        model = self.model
        heads = {"vtm": model.vtm_head is not None, "mlm": model.mlm_head is not None}
        heads["mvm"] = list(model.mvm_heads.keys())
        heads["task_embedding"] = getattr(model, "task_embedding", None) is not None
        answers = getattr(model, "answer_head", None)
        heads["answers"] = answers.fc2.out_features if answers is not None else None
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "class_path": _class_path(type(self)),
            "init_args": _jsonable(init_args, "init_args"),
            "architecture": cfg.to_dict(),
            "heads": heads,
            "preprocessing": (preprocessing or self.preprocessing).to_dict(),
            "dtype": str(next(self.parameters()).dtype).removeprefix("torch."),
        }

    def save_pretrained(
        self, save_directory: str | os.PathLike, *, preprocessing: Preprocessing | None = None
    ) -> Path:
        """Write ``config.json``, ``model.safetensors``, the tokenizer files and a model card.

        Args:
            save_directory: Output directory (created; files of an earlier save are replaced).
            preprocessing: Record this instead of :attr:`preprocessing`.

        Returns:
            The directory, loadable with ``VioletModule.from_pretrained(directory)`` (or upload it to the Hub
            as a model repository and load it by name).
        """
        from safetensors.torch import save_file

        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        pre = preprocessing or self.preprocessing
        pre = dataclasses.replace(pre, tokenizer=_save_tokenizer(pre.tokenizer, out))
        config = self.pretrained_config(pre)
        save_file(_unshared(self.state_dict()), str(out / WEIGHTS_NAME), metadata={"format": "pt"})
        (out / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        (out / "README.md").write_text(_card(config, out.name))
        return out

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        source: str | os.PathLike,
        *,
        map_location: str | torch.device | None = None,
        strict: bool = True,
        preprocessing: Preprocessing | Mapping[str, Any] | None = None,
        task: str | None = None,
        architecture: VioletConfig | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        token: str | bool | None = None,
        **overrides: Any,
    ) -> Any:
        """Restore a model, as the task class that saved it, without the training config.

        Args:
            source: A directory written by :meth:`save_pretrained`; a Hub repository name (``"org/name"``);
                a Lightning ``.ckpt`` saved by any task; or a public VIOLETv2 / VIOLET v1 release file
                (``.pth`` / ``.bin`` / ``.safetensors``), converted on the fly.
            map_location: Device the weights are loaded onto (default CPU; move the model afterwards).
            strict: Every weight must match the rebuilt module's.
            preprocessing: Replace (a :class:`Preprocessing`) or update (a dict of fields) what was saved.
            task: For release files only: the task class to build (a key of :data:`TASKS`); default from the
                heads found (VTM + MLM: the base module, VTM only: retrieval, MLM only or an answer
                classifier: open-ended QA).
            architecture: For release files only: the config when no preset matches (e.g. tiny test models).
            revision: Hub revision (branch, tag or commit).
            cache_dir: Hub cache directory.
            token: Hub token.
            **overrides: Constructor arguments replacing the saved ones (e.g. ``lr=1e-5`` to fine-tune).

        Returns:
            A module of the saved class in eval mode (``cls`` or a subclass of it).
        """
        path = Path(os.fspath(source))
        if path.is_file() and path.name == CONFIG_NAME:
            path = path.parent
        if not path.exists():
            path = _download(str(source), revision, cache_dir, token)
        if path.is_dir():
            module = _from_directory(cls, path, map_location, strict, overrides)
        elif path.suffix == ".ckpt" or _is_lightning_checkpoint(path):
            module = _from_lightning(cls, path, map_location, strict, overrides)
        else:
            module = _from_release(cls, path, task, architecture, strict, overrides)
            if map_location is not None:
                module.to(map_location)
        if preprocessing is not None:
            update = preprocessing if isinstance(preprocessing, Preprocessing) else None
            module.preprocessing = update or dataclasses.replace(module.preprocessing, **dict(preprocessing))
        return module.eval()


# ---------------------------------------------------------------------------------------------- helpers


def _unshared(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """CPU, contiguous tensors; a tensor whose storage another key already uses is copied (safetensors
    refuses shared storage)."""
    seen: set[int] = set()
    out = {}
    for k, v in sd.items():
        t = v.detach().cpu().contiguous()
        ptr = t.untyped_storage().data_ptr()
        out[k] = t.clone() if ptr in seen else t
        seen.add(ptr)
    return out


def _save_tokenizer(name: str | None, out: Path) -> str | None:
    """Copy the tokenizer into ``out`` (then recorded as ``"."``); a name that cannot be loaded here (e.g.
    ``bert-base-uncased`` without the Hub) is recorded as it is."""
    if name is None:
        return None
    if name == "." or Path(name).resolve() == out.resolve():
        return "."
    from transformers import AutoTokenizer

    try:  # a hub name only from the local cache: saving never downloads
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=not Path(name).is_dir())
    except (OSError, ValueError) as e:
        log.warning(
            "tokenizer %r not saved with the model (cannot load it here: %s); recorded by name", name, e
        )
        return name
    tokenizer.save_pretrained(str(out))
    return "."


def _card(config: dict[str, Any], name: str) -> str:
    pre, heads = config["preprocessing"], config["heads"]
    names = [k for k in ("vtm", "mlm") if heads[k]] + [f"mvm:{m}" for m in heads["mvm"]]
    cls = config["class_path"].rsplit(".", 1)[-1]
    return _MODEL_CARD.format(
        task=cls.removesuffix("Module").lower() or "base",
        name=name,
        cls=cls,
        preset=config["init_args"].get("preset", config["architecture"]["name"]),
        heads=", ".join(names) or "none",
        repo=name,
        frames=pre["num_frames"],
        size=pre["image_size"],
        transform=pre["transform"],
        text_len=pre["max_text_len"],
    )


def _download(name: str, revision: str | None, cache_dir: Any, token: Any) -> Path:
    """Fetch a Hub model repository (only the files a saved model has) into the local cache."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        local = snapshot_download(
            name, revision=revision, cache_dir=cache_dir, token=token, allow_patterns=_HUB_FILES
        )
    except HFValidationError as e:
        raise FileNotFoundError(f"{name}: no such file or directory (and not a Hub repository name)") from e
    except Exception as e:  # offline, no such repository, no access: all end here
        raise FileNotFoundError(
            f"{name}: no such file or directory, and the Hub lookup failed ({type(e).__name__}: {e})"
        ) from e
    return Path(local)


def _is_lightning_checkpoint(path: Path) -> bool:
    if path.suffix == ".safetensors":
        return False
    try:
        peek = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return False
    return isinstance(peek, dict) and "state_dict" in peek and "hyper_parameters" in peek


def _resolve_class(requested: type, class_path: str, source: str) -> type:
    from ..tasks.base import _saved_class

    return _saved_class({"violetv2": {"class_path": class_path}, "state_dict": {}}, requested, source)


def _build(target: type, init_args: dict[str, Any], architecture: dict[str, Any] | None) -> Any:
    args = dict(init_args)
    if architecture is not None:  # the exact architecture, even if a preset changed since the save
        args["config"] = {k: v for k, v in architecture.items() if k != "name"}
        args["preset"] = architecture.get("name", args.get("preset"))
    args.update(dict.fromkeys(_INIT_PATHS))
    return target(**args)


def _from_directory(cls: type, path: Path, map_location: Any, strict: bool, overrides: dict[str, Any]) -> Any:
    from safetensors.torch import load_file

    config = read_config(path)
    target = _resolve_class(cls, config["class_path"], str(path))
    init_args = dict(config["init_args"])
    pre = Preprocessing.from_dict(config["preprocessing"], str(path / CONFIG_NAME)).resolve_tokenizer(path)
    if "tokenizer" in init_args and init_args["tokenizer"] is None and _tokenizer_files(path):
        init_args["tokenizer"] = str(path)
    architecture = config.get("architecture")
    if "config" in overrides or "preset" in overrides:
        architecture = None
    module = _build(target, {**init_args, **overrides}, architecture)
    weights = path / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"{path}: no {WEIGHTS_NAME}")
    device = str(map_location) if map_location is not None else "cpu"
    module.load_state_dict(load_file(str(weights), device=device), strict=strict)
    if map_location is not None:
        module.to(map_location)
    module.preprocessing = pre
    return module


def _from_lightning(cls: type, path: Path, map_location: Any, strict: bool, overrides: dict[str, Any]) -> Any:
    peek = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    saved = (peek.get("violetv2") or {}).get("preprocessing")
    del peek
    module = cls.load_from_checkpoint(path, map_location=map_location, strict=strict, **overrides)
    if saved is not None:
        module.preprocessing = Preprocessing.from_dict(saved, f"{path} (violetv2.preprocessing)")
    return module


def _default_task(vtm: bool, mlm: bool, answers: Any) -> str:
    if answers is not None:
        return "open_qa"
    if vtm and mlm:
        return "base"
    return "retrieval" if vtm else "open_qa"


def wrap_model(
    model: Any,
    task: str | None = None,
    *,
    requested: type | None = None,
    task_embedding: bool | None = None,
    tokenizer: str | None = None,
    strict: bool = True,
    source: str = "model",
    **overrides: Any,
) -> Any:
    """A task module (``task``: a key of :data:`TASKS`) holding a converted :class:`VioletModel`'s weights.

    Default task from the heads: VTM + MLM -> the base module, VTM only -> retrieval, MLM only -> open-ended
    QA. ``requested`` (default :class:`VioletModule`) must be a base class of the result. ``tokenizer``
    (directory or name) is recorded in the preprocessing and given to tasks that take one.
    """
    from ..tasks.base import VioletModule

    answers = getattr(model, "answer_head", None)
    name = task or _default_task(model.vtm_head is not None, model.mlm_head is not None, answers)
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {sorted(TASKS)}")
    target = _resolve_class(requested or VioletModule, TASKS[name], source)
    if task_embedding is None:
        task_embedding = getattr(model, "task_embedding", None) is not None
    answers = getattr(model, "answer_head", None)
    args = {
        "preset": model.cfg.name,
        "vtm_head": model.vtm_head is not None,
        "mlm_head": model.mlm_head is not None,
        "mvm_heads": list(model.mvm_heads.keys()),
        "task_embedding": task_embedding,
        "num_answers": answers.fc2.out_features if answers is not None else None,
        "tokenizer": tokenizer,
    }
    args = {k: v for k, v in args.items() if _accepts(target, k)}
    module = _build(target, {**args, **overrides}, model.cfg.to_dict())
    module.model.load_state_dict(model.state_dict(), strict=strict)
    if tokenizer is not None:
        module.preprocessing = dataclasses.replace(module.preprocessing, tokenizer=tokenizer)
    return module


def _from_release(
    cls: type,
    path: Path,
    task: str | None,
    architecture: VioletConfig | None,
    strict: bool,
    overrides: dict[str, Any],
) -> Any:
    from ..convert import ConversionError, detect_source, read_state_dict
    from ..convert.release import convert_release

    sd, name = read_state_dict(path)
    kind = detect_source(sd)
    if kind != "release":
        raise ConversionError(
            f"{name} is a {kind} state dict without a config: save it with save_pretrained (a directory), "
            "or load it into a module with init_checkpoint=..."
        )
    model, layout = convert_release(sd, source_name=name, config=architecture)
    del sd
    return wrap_model(
        model,
        task,
        requested=cls,
        task_embedding=layout.has_task_embedding,
        strict=strict,
        source=name,
        **overrides,
    )


def _accepts(target: type, name: str) -> bool:
    """Whether ``target``'s constructor takes ``name`` (directly or through ``**kwargs`` to the base)."""
    import inspect

    for klass in target.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters
        if name in params:
            return True
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return False
    return False


def _from_datamodule(module: Any) -> Preprocessing | None:
    """Preprocessing of the datamodule attached to ``module``'s trainer, if any."""
    trainer = getattr(module, "_trainer", None)
    dm = getattr(trainer, "datamodule", None) if trainer is not None else None
    if dm is None or not hasattr(dm, "num_frames"):
        return None
    tokenizer = getattr(dm, "tokenizer_name", None)
    if tokenizer is None and getattr(dm, "synthetic", False):
        tokenizer = str(Path(dm.synthetic_root) / "tokenizer")
    return Preprocessing(
        num_frames=dm.num_frames,
        image_size=dm.image_size,
        transform=getattr(dm, "eval_transform", None) or "center_crop",
        sampling=getattr(dm, "frame_sampling", None) or "release",
        num_clips=getattr(dm, "num_clips", 1),
        max_text_len=dm.max_text_len,
        tokenizer=tokenizer or getattr(module.hparams, "tokenizer", None) or "bert-base-uncased",
    )


def _default_preprocessing(module: Any) -> Preprocessing:
    from ..data.text import MAX_LEN_PRETRAIN
    from ..tasks.pretrain import PretrainModule

    cfg: VioletConfig = module.cfg
    pretrain = isinstance(module, PretrainModule)
    return Preprocessing(
        num_frames=cfg.num_frames,
        image_size=cfg.image_size,
        max_text_len=MAX_LEN_PRETRAIN if pretrain else module.default_max_text_len,
        tokenizer=module.hparams.get("tokenizer") or "bert-base-uncased",
    )
