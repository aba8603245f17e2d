"""Seeds derived from several numbers, so that a stream depends only on what names it.

A run's randomness is split into independent streams, one per (seed, epoch), (seed, block)
or (seed, rank, update): each stream is a function of its own numbers only, so a resumed
run draws exactly what an uninterrupted one drew, with no generator state to save.
NumPy's ``SeedSequence`` mixes the numbers into well-spread 64-bit seeds: the first number
is the run's seed (its entropy) and the others the path to the stream (its ``spawn_key``),
so ``(seed, epoch, 0)`` and ``(seed, epoch)`` are different streams. (Passing all of them as
entropy would not do: ``SeedSequence`` pads short entropy with zeros, so trailing zeros would
be lost and the two streams would coincide.)
"""
from __future__ import annotations

import numpy as np
import torch


def derive_seed(*numbers: int) -> int:
    """A 64-bit seed that depends on every number given, e.g. ``derive_seed(seed, epoch)``."""
    if not numbers:
        raise ValueError("derive_seed needs at least one number, the run's seed")
    seed, *path = (int(n) for n in numbers)
    return int(np.random.SeedSequence(seed, spawn_key=tuple(path)).generate_state(1, dtype=np.uint64)[0])


def generator(*numbers: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded by ``derive_seed(*numbers)``."""
    return torch.Generator().manual_seed(derive_seed(*numbers))

