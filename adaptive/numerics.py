"""Floating-point care that every layer shares: a log that never returns -inf, and fast subnormals.

Both live below the mechanisms, beside the input checks, so that a mechanism, the loop and a
trainer all use the same one.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch


def safe_log(probabilities: torch.Tensor) -> torch.Tensor:
    """``log p`` with p clamped to the dtype's smallest normal number, so that ``log 0`` is finite.

    A probability that underflows to exactly 0 (a product of many halting values, say) would
    give ``-inf`` and a NaN gradient; clamped, it gives a large finite negative number and a
    zero gradient, which is what ``0 log 0 = 0`` needs in a KL or a cross-entropy.
    """
    return probabilities.clamp_min(torch.finfo(probabilities.dtype).tiny).log()


@contextmanager
def flush_denormals():
    """Treat subnormal floats as zero on the CPU inside this block (or decorated function).

    DACT's p_n = prod h_i (and PACT's and PonderNet's stick remainders) shrink
    geometrically and soon fall below float32's smallest normal number; CPU
    arithmetic on such subnormal values is many times slower, and the backward
    pass carries them into every matrix product. Flushing them to zero changes
    nothing measurable in the results and keeps training at full speed. The
    setting is process-wide, so it is restored to IEEE behaviour on exit: other
    code (hypothesis, for one) relies on subnormals.
    """
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
