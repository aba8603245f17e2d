"""Graves' parity task (Graves 2016, sec. 3.1).

An input is a vector of ``size`` entries. A random number of them, between
``min_nonzero`` and ``max_nonzero``, sit at random positions and are set to +1
or -1 with equal chance; the rest are 0. The target is 1 when the number of
**+1** entries is odd (not the number of non-zero entries). The whole vector is
shown at once, so all the work is pondering. The difficulty of an input is its
number of non-zero entries.

Every sample is a function of a seed: a training stream is drawn from a
seeded ``torch.Generator`` and the validation set is fixed once, so it is the
same at every evaluation and in every run with the same seed.

Held out means never trained on: a fixed hash splits the space of input
vectors into a training part and a held-out part (``held_out`` of it), and
each split is drawn only from its part. Small vectors have few distinct
inputs (3^8 = 6561 for size 8), so without this split the validation set
would be memorised.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import _checks


@dataclass(frozen=True)
class Parity:
    """A parity task: vector length and the range of non-zero counts."""

    size: int = 8
    min_nonzero: int = 1
    max_nonzero: int | None = None    # None: up to ``size``
    held_out: float = 0.1             # fraction of the input space kept for evaluation

    def __post_init__(self):
        _checks.positive_int("size", self.size)
        _checks.positive_int("min_nonzero", self.min_nonzero)
        if not 0 < self.held_out < 1:
            raise ValueError(f"held_out must be a fraction in (0, 1), got {self.held_out!r}")
        high = self.high
        if not isinstance(high, int) or not self.min_nonzero <= high <= self.size:
            raise ValueError(f"max_nonzero must be an integer in min_nonzero..size = "
                             f"{self.min_nonzero}..{self.size}, got {self.max_nonzero!r}")

    @property
    def high(self) -> int:
        return self.size if self.max_nonzero is None else self.max_nonzero

    def _draw(self, n: int, generator: torch.Generator):
        """n raw examples from the whole input space."""
        difficulty = torch.randint(self.min_nonzero, self.high + 1, (n,), generator=generator)
        # random positions: rank random keys, keep the first `difficulty` of each row
        ranks = torch.rand(n, self.size, generator=generator).argsort(dim=1).argsort(dim=1)
        nonzero = ranks < difficulty.unsqueeze(1)                          # (n, size) bool
        signs = torch.randint(0, 2, (n, self.size), generator=generator) * 2 - 1
        x = (nonzero * signs).to(torch.float32)                            # (n, size)
        target = ((x == 1).sum(dim=1) % 2).to(torch.int64)                 # (n,)
        return x, target, difficulty

    def is_held_out(self, x: torch.Tensor) -> torch.Tensor:
        """(n,) bool: whether each input vector belongs to the held-out part of the space."""
        weights = torch.arange(1, self.size + 1, dtype=torch.int64) * 2654435761 % 2147483647
        code = ((x.to(torch.int64) + 1) * weights).sum(dim=1)               # same x, same code
        bucket = (code * 40503 % 2147483647) % 10007
        return bucket < int(self.held_out * 10007)

    def sample(self, n: int, generator: torch.Generator, split: str = "train"):
        """Draw n examples from one split of the input space.

        Args:
            n: number of examples.
            generator: the random stream to draw from.
            split: ``"train"`` or ``"held_out"``.
        Returns:
            x: (n, size) float32 in {-1, 0, +1};
            target: (n,) int64 parity of the +1 entries;
            difficulty: (n,) int64 number of non-zero entries.
        """
        _checks.positive_int("n", n)
        _checks.choice("split", split, ("train", "held_out"))
        parts, have = [], 0
        for _ in range(1000):
            x, target, difficulty = self._draw(2 * n, generator)
            keep = self.is_held_out(x) == (split == "held_out")
            parts.append((x[keep], target[keep], difficulty[keep]))
            have += int(keep.sum())
            if have >= n:
                break
        else:
            raise ValueError(f"could not draw {n} {split} examples: the split is too small for "
                             f"size={self.size}; raise held_out or size")
        return tuple(torch.cat(column)[:n] for column in zip(*parts))

    def fixed_set(self, n: int, seed: int):
        """A held-out validation or test set: the same n examples for the same seed."""
        return self.sample(n, torch.Generator().manual_seed(seed), split="held_out")


def extrapolation_split(size: int = 96) -> tuple[Parity, Parity]:
    """PonderNet's extrapolation split: train on 1..size/2 non-zeros, test on size/2+1..size."""
    _checks.positive_int("size", size)
    if size < 2:
        raise ValueError(f"size must be >= 2 to split it in halves, got {size}")
    half = size // 2
    return Parity(size, 1, half), Parity(size, half + 1, size)
