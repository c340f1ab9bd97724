"""Per-sample random streams: masks, MLM positions and VTM negatives that differ between ranks, repeat after a
resume, and do not depend on how the global batch is split across processes.

Every random draw of a training step is made from a ``torch.Generator`` of its own sample, seeded from a hash
of ``(seed, stage, step, global position, purpose)``:

- ``stage, step``: ``("train", batch counter)`` in training (the counter is Lightning's ``total_batch_idx``,
  part of the checkpoint, so a resumed run draws what the uninterrupted run drew), ``("val", dataloader_idx,
  batch_idx)`` in validation (the same masks every epoch, so validation losses compare);
- global position: ``rank + world_size * i`` for row ``i`` of rank ``rank``'s batch, i.e. the row's position in
  the global batch as a ``DistributedSampler`` deals it (global row ``p`` goes to rank ``p % world_size``). Two
  ranks never share a stream (whatever their batch sizes), and one process running the global batch draws
  exactly what the ranks drew;
- purpose: ``"mask"``, ``"mlm"``, ``"vtm"``: independent streams, so enabling one draw never shifts another.

A function taking ``generator`` accepts a list of generators, one per row (see :func:`uniform`). Draws happen on
the host (a few hundred numbers per step) and are moved to the device once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Sequence

import torch
from torch import Tensor

__all__ = ["Generators", "SampleStreams", "stream_seed", "subset", "uniform"]

Generators = torch.Generator | Sequence[torch.Generator] | None


def stream_seed(*key: Hashable) -> int:
    """A 63-bit seed from a tuple of ints / strings (stable across processes and Python runs)."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def uniform(
    shape: tuple[int, ...],
    generator: Generators,
    device: torch.device | str | None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """U[0, 1) noise of ``shape`` on ``device``.

    Args:
        shape: Output shape; with one generator per row, ``shape[0]`` rows.
        generator: ``None`` (the global RNG), one generator (drawn on its device), or a sequence of
            ``shape[0]`` generators: row ``i`` is drawn from ``generator[i]`` alone, so it does not depend on the
            other rows or on the batch size.
        device: Device of the result (``None``: the generator's, or CPU).
        dtype: Floating dtype of the draws.
    """
    if generator is None or isinstance(generator, torch.Generator):
        where = generator.device if generator is not None else device
        noise = torch.rand(shape, generator=generator, device=where, dtype=dtype)
        return noise if device is None else noise.to(device)
    if len(generator) != shape[0]:
        raise ValueError(f"{len(generator)} per-row generators for a draw of shape {tuple(shape)}")
    rows = [torch.rand(shape[1:], generator=g, device=g.device, dtype=dtype) for g in generator]
    noise = torch.stack(rows) if rows else torch.empty(shape, dtype=dtype)
    return noise if device is None else noise.to(device)


def subset(generator: Generators, index: Sequence[int] | Tensor) -> Generators:
    """The generators of rows ``index`` (a single generator or ``None`` is shared by every row)."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    index = index.tolist() if isinstance(index, Tensor) else index
    return [generator[i] for i in index]


class SampleStreams:
    """The per-sample generators of one batch.

    Args:
        seed: Base seed (the run's ``seed_everything`` seed by default in the task modules).
        context: What identifies the batch: ``("train", step)`` or ``("val", dataloader_idx, batch_idx)``.
        positions: Global position of every row (``rank + world_size * i``).

    >>> a = SampleStreams(0, ("train", 7), [2, 3]).generators("mask")
    >>> b = SampleStreams(0, ("train", 7), [0, 1, 2, 3]).generators("mask")[2:]
    >>> [torch.rand(1, generator=g).item() for g in a] == [torch.rand(1, generator=g).item() for g in b]
    True
    """

    def __init__(self, seed: int, context: tuple[Hashable, ...], positions: Sequence[int]) -> None:
        self.seed, self.context, self.positions = int(seed), tuple(context), [int(p) for p in positions]

    def __repr__(self) -> str:
        return f"SampleStreams(seed={self.seed}, context={self.context}, positions={self.positions})"

    def generators(self, purpose: str) -> list[torch.Generator]:
        """A fresh CPU generator per row for ``purpose`` (the same every time it is asked for)."""
        return [
            torch.Generator().manual_seed(stream_seed(self.seed, *self.context, p, purpose))
            for p in self.positions
        ]
