"""Seeds derived from several numbers, so that a stream depends only on what names it.

A run's randomness is split into independent streams, one per (seed, epoch), (seed, block)
or (seed, rank, update): each stream is a function of its own numbers only, so a resumed
run draws exactly what an uninterrupted one drew, with no generator state to save.
NumPy's ``SeedSequence`` mixes the numbers into well-spread 64-bit seeds.
"""
from __future__ import annotations

import numpy as np
import torch


def derive_seed(*numbers: int) -> int:
    """A 64-bit seed that depends on every number given, e.g. ``derive_seed(seed, epoch)``."""
    return int(np.random.SeedSequence([int(n) for n in numbers]).generate_state(1, dtype=np.uint64)[0])


def generator(*numbers: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded by ``derive_seed(*numbers)``."""
    return torch.Generator().manual_seed(derive_seed(*numbers))


def legacy_derive_seed(*numbers: int) -> int:  # TEMPORARY: the old clevr.distributed formula
    state = np.random.SeedSequence([int(n) for n in numbers]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def legacy_generator(*numbers: int) -> torch.Generator:  # TEMPORARY: the old EpochShuffle formula
    state = np.random.SeedSequence([int(n) for n in numbers]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
