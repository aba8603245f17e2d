"""What the benchmarks share: device-synchronised timing, the report writer, forced halting depths.

Benchmarks print measured tables and write them as JSON; they never assert a time.

Timings that must hold on a busy machine come from ``interleaved``: every variant is timed
once per round, the rounds alternate the variants, and each timing repeats its call for at
least ``min_seconds`` (as ``torch.utils.benchmark``'s blocked autorange does), so a burst of
load from elsewhere hits all variants alike. ``ratio`` reports the ratio of two variants'
fastest rounds with the spread of the round-by-round ratios next to it: noise only ever adds
time, so the fastest of many rounds of at least ``min_seconds`` is the steadiest estimate of a
call's own cost. Three back-to-back runs of ``python -m adaptive.benchmark --quick`` (45 rounds
of 0.1 s, a quiet 2-core AMD EPYC, 41 ratios) differed by at most 3.5 / 4.6 / 6.2 % pair by pair
with the fastest rounds (100 / 100 / 97 % of the ratios within 5 %), by 9.8 / 10.9 / 4.7 % with
the median rounds, and by 7.9 / 11.3 / 5.8 % with the median of the round-by-round ratios. (An
earlier version with fewer, shorter rounds and no ``steady_allocator`` saw the fastest round
move by 30-65 %.) With a one-thread load running beside the two-thread benchmark, no estimate
held: two runs differed by 43-74 % on some ratio and agreed within 5 % on 6-28 % of them.

On Linux, glibc hands large freed blocks back to the system and the next allocation of that
size pays page faults for them again; how often depends on what ran before, so one variant can
measure up to twice its own time next to another. ``steady_allocator`` starts a benchmark's
command again with glibc told to keep what it freed (``STEADY_ALLOCATOR``), so its timings
measure the computation; each benchmark calls it first thing when run as a command, and
records the variables it ran with (``allocator``).
"""
from __future__ import annotations

import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from .. import _checks

# glibc: never serve large blocks by mmap, never trim the heap (4e9 bytes: above any block here)
STEADY_ALLOCATOR = {"MALLOC_MMAP_THRESHOLD_": "4000000000", "MALLOC_TRIM_THRESHOLD_": "4000000000"}
SHARPNESS = 12.0            # |halting logit| of a forced decision: h within 1e-5 of 0 or 1


def halt_from_depth(step_index: torch.Tensor, depth: torch.Tensor, sharpness: float = SHARPNESS) -> torch.Tensor:
    """(b,) halting logits that say "halt" (+sharpness) from step ``depth`` on and "go on"
    (-sharpness) before: how the benchmarks make sample i stop after depth[i] steps,
    whatever a model has learnt. ``step_index``: (b,) the steps computed so far."""
    return torch.where(step_index >= depth, sharpness, -sharpness)


def synchronize(device: torch.device | str) -> None:
    """Wait until the device has run what was queued on it (CUDA); nothing to wait for on a CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(call, device: torch.device | str = "cpu") -> float:
    """Seconds one ``call()`` takes, with the device synchronised before and after."""
    synchronize(device)
    start = time.perf_counter()
    call()
    synchronize(device)
    return time.perf_counter() - start


def steady_allocator(module: str) -> None:
    """Start ``python -m module`` again with ``STEADY_ALLOCATOR`` in its environment, unless it is there
    already (or this is no glibc system); call it only from a command's ``__main__``: it replaces the
    process. A variable the user set is kept as they set it."""
    if not sys.platform.startswith("linux") or all(name in os.environ for name in STEADY_ALLOCATOR):
        return
    environment = {**STEADY_ALLOCATOR, **os.environ}
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", module, *sys.argv[1:]], environment)


def allocator() -> dict:
    """The ``MALLOC_`` variables this process runs with, for a benchmark's recorded configuration."""
    return {name: value for name, value in os.environ.items() if name.startswith("MALLOC_")}


def write_report(result: dict, out: str | Path, table: str) -> None:
    """The end of a benchmark's command line: ``result`` as JSON in ``out``, ``table`` printed."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2))
    print(table)
    print(f"\nwritten to {out}")


def median_seconds(call, device: torch.device | str = "cpu", repeats: int = 3) -> float:
    """The median of ``repeats`` timings of ``call()`` after one warm-up call."""
    _checks.positive_int("repeats", repeats)
    call()
    return statistics.median(timed(call, device) for _ in range(repeats))


def interleaved(calls: dict[str, Callable[[], object]], rounds: int = 7, device: torch.device | str = "cpu",
                min_seconds: float = 0.05) -> dict[str, list[float]]:
    """Seconds per call of every variant in ``calls``, one timing per round, ``rounds`` rounds.

    A warm-up round calls each variant once and fixes how many calls one timing makes (enough
    for ``min_seconds``); each round then times every variant, in an order rotated from round
    to round, so no variant always runs first (with cold caches) or last.
    """
    _checks.positive_int("rounds", rounds)
    names = list(calls)
    numbers = {name: max(1, math.ceil(min_seconds / max(timed(calls[name], device), 1e-9))) for name in names}
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        for name in names[index % len(names):] + names[:index % len(names)]:
            call, number = calls[name], numbers[name]
            seconds[name].append(timed(lambda: [call() for _ in range(number)], device) / number)
    return seconds


def ratio(numerator: list[float], denominator: list[float]) -> tuple[float, float]:
    """``min(numerator) / min(denominator)``, the fastest rounds', and its spread: the interquartile
    range of the round-by-round ratios, relative to their median (0.02: the rounds agree within about 2 %)."""
    per_round = sorted(a / b for a, b in zip(numerator, denominator))
    quartiles = statistics.quantiles(per_round, n=4) if len(per_round) > 1 else per_round * 3
    return min(numerator) / min(denominator), (quartiles[2] - quartiles[0]) / statistics.median(per_round)
