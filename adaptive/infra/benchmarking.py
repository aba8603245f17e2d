"""What the benchmarks share: device-synchronised timing, the report writer, forced halting depths.

Benchmarks print measured tables and write them as JSON; they never assert a time.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch

from .. import _checks

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
