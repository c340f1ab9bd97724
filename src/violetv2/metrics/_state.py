"""Helpers shared by the metrics: concatenating list states and removing repeated samples."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["cat_state", "first_occurrence", "as_index"]


def cat_state(state: list[Tensor] | Tensor, dtype: torch.dtype, device: torch.device) -> Tensor:
    """One tensor from a list state (after a distributed sync it may already be one tensor)."""
    if isinstance(state, Tensor):
        return state.to(dtype)
    parts = [t.reshape(-1) if t.ndim == 0 else t for t in state]
    if not parts:
        return torch.empty(0, dtype=dtype, device=device)
    return torch.cat(parts).to(dtype)


def first_occurrence(keys: Tensor) -> Tensor:
    """Positions of the first row of each distinct key, in order of first appearance.

    Args:
        keys: ``[n]`` or ``[n, k]`` integer keys (e.g. sample indices, or (text, video) index pairs).

    Returns:
        ``[u]`` long positions into ``keys``: one per distinct key, sorted ascending, so the kept rows
        keep their original order.
    """
    if keys.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=keys.device)
    _, inverse = torch.unique(keys, dim=0, return_inverse=True)
    positions = torch.arange(keys.shape[0], device=keys.device)
    first = torch.full((int(inverse.max()) + 1,), keys.shape[0], dtype=torch.long, device=keys.device)
    first = first.scatter_reduce(0, inverse, positions, reduce="amin")
    return first.sort().values


def as_index(value: Tensor | list[int] | tuple[int, ...], name: str, length: int) -> Tensor:
    """Validate an integer index vector of ``length`` entries (clear error naming ``name``)."""
    index = torch.as_tensor(value)
    if index.ndim != 1 or index.shape[0] != length:
        raise ValueError(
            f"{name} must be a 1-D tensor of {length} sample indices, got shape {tuple(index.shape)}"
        )
    if index.is_floating_point() or index.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer sample indices, got dtype {index.dtype}")
    return index.long()
