"""Key-table machinery shared by every converter.

A key table is an ordered list of ``(source_template, target_template)`` pairs. Templates use ``{}`` for a
layer index (digits) and ``{*}`` for any dotted suffix; ``target_template = None`` drops the matched source keys
deliberately. :func:`convert_state_dict` applies a table and fails loudly unless every source key is consumed
or dropped, every target key is filled and every shape matches.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

__all__ = [
    "Conversion",
    "ConversionError",
    "KeyTable",
    "convert_state_dict",
    "export_state_dict",
    "load_state_dict_file",
]

KeyTable = list[tuple[str, str | None]]


class ConversionError(ValueError):
    """A checkpoint does not fit the target model; the message names every offending key."""


@dataclass
class Conversion:
    """Result of :func:`convert_state_dict`: the converted tensors and what was dropped."""

    state_dict: dict[str, Tensor]
    dropped: list[str] = field(default_factory=list)


def _compile(template: str) -> re.Pattern[str]:
    pattern = re.escape(template).replace(r"\{\}", r"(\d+)").replace(r"\{\*\}", r"(.+)")
    return re.compile(f"^{pattern}$")


def _fill(template: str, groups: tuple[str, ...]) -> str:
    out = template
    for g in groups:
        out = re.sub(r"\{\*?\}", lambda _, g=g: g, out, count=1)
    return out


def _limit(keys: list[str], n: int = 12) -> str:
    return ", ".join(keys[:n]) + (f" ... ({len(keys)} in all)" if len(keys) > n else "")


def convert_state_dict(
    source: Mapping[str, Tensor],
    table: KeyTable,
    target_shapes: Mapping[str, tuple[int, ...]],
    *,
    source_name: str = "checkpoint",
    transforms: Mapping[str, Callable[[Tensor, tuple[int, ...]], Tensor]] | None = None,
) -> Conversion:
    """Map ``source`` onto the keys of ``target_shapes`` with ``table``.

    Args:
        source: Source state dict.
        table: Ordered ``(source_template, target_template | None)`` pairs; the first match wins.
        target_shapes: Every key the target model expects, with its shape.
        source_name: Used in error messages (e.g. the file path).
        transforms: Target key -> function ``(tensor, target_shape) -> tensor`` for anything beyond a rename
            (e.g. inflating a patch kernel).

    Raises:
        ConversionError: Unmatched source keys, unfilled or unknown target keys, or shape mismatches.
    """
    rules = [(_compile(s), t) for s, t in table]
    transforms = transforms or {}
    out: dict[str, Tensor] = {}
    dropped, unmatched, unknown, mismatched, twice = [], [], [], [], []
    for key, value in source.items():
        rule = next(((rx.match(key), t) for rx, t in rules if rx.match(key)), None)
        if rule is None:
            unmatched.append(key)
            continue
        match, target = rule
        if target is None:
            dropped.append(key)
            continue
        new = _fill(target, match.groups())
        if new not in target_shapes:
            unknown.append(f"{key} -> {new}")
            continue
        if new in out:
            twice.append(new)
        shape = tuple(target_shapes[new])
        if new in transforms:
            value = transforms[new](value, shape)
        if tuple(value.shape) != shape:
            mismatched.append(f"{key} {tuple(value.shape)} -> {new} {shape}")
            continue
        out[new] = value
    missing = [k for k in target_shapes if k not in out]
    problems = []
    if unmatched:
        problems.append(f"unexpected source keys (no rule): {_limit(unmatched)}")
    if unknown:
        problems.append(f"keys mapped to names the model does not have: {_limit(unknown)}")
    if twice:
        problems.append(f"target keys filled twice: {_limit(twice)}")
    if mismatched:
        problems.append(f"shape mismatches: {_limit(mismatched)}")
    if missing:
        problems.append(f"model keys missing from the checkpoint: {_limit(missing)}")
    if problems:
        raise ConversionError(f"cannot convert {source_name}:\n  " + "\n  ".join(problems))
    return Conversion(out, dropped)


def export_state_dict(ours: Mapping[str, Tensor], table: KeyTable) -> dict[str, Tensor]:
    """Apply a key table backwards (our names -> source names); every key must have a rule."""
    rules = [(_compile(t), s) for s, t in table if t is not None]
    out, unmatched = {}, []
    for key, value in ours.items():
        rule = next(((rx.match(key), s) for rx, s in rules if rx.match(key)), None)
        if rule is None:
            unmatched.append(key)
            continue
        out[_fill(rule[1], rule[0].groups())] = value
    if unmatched:
        raise ConversionError(f"no export rule for: {_limit(unmatched)}")
    return out


def load_state_dict_file(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a state dict from ``.safetensors`` or a ``torch.save`` file (``weights_only=True``).

    Unwraps the usual containers (``{"state_dict": ...}``, ``{"model": ...}``, ``{"module": ...}``) and strips a
    DDP ``module.`` prefix. A directory written by ``save_pretrained`` reads its ``model.safetensors``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_dir():
        if not (path / "model.safetensors").is_file():
            raise FileNotFoundError(
                f"{path} is a directory without model.safetensors (not from save_pretrained)"
            )
        path = path / "model.safetensors"
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd: object = load_file(str(path))
    else:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # pickle errors, truncated files, objects refused by weights_only
            raise ConversionError(f"cannot read {path} as a weights-only torch checkpoint: {err}") from err
    return unwrap_state_dict(sd, str(path))


def unwrap_state_dict(sd: object, name: str = "checkpoint") -> dict[str, Tensor]:
    """Find the tensor dict inside common checkpoint containers; strip ``module.`` prefixes."""
    for key in ("state_dict", "model", "module"):
        if isinstance(sd, Mapping) and key in sd and isinstance(sd[key], Mapping):
            sd = sd[key]
    if not isinstance(sd, Mapping) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise ConversionError(f"{name} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in sd.items()}
