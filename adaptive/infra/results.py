"""The results file every training chapter writes.

``{"parameters": {...}, "runs": [{"method", "tau", "seed", "accuracy",
"mean_steps", "max_steps", ...}, ...]}``, written atomically so a reader
never sees half a file. A chapter that also measures things that are not training runs
(timings, gradient variances) puts them under ``"measurements"``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from . import checkpoint

REQUIRED = ("method", "tau", "seed", "accuracy", "mean_steps", "max_steps")


def write(path: str | os.PathLike, parameters: dict, runs: list[dict], measurements: dict | None = None) -> Path:
    """Check that each run has the required fields and write the file atomically.

    Args:
        measurements: optional results that are not training runs, stored under that key.
    """
    for index, run in enumerate(runs):
        missing = [key for key in REQUIRED if key not in run]
        if missing:
            raise ValueError(f"runs[{index}] lacks {', '.join(missing)}; every run needs {', '.join(REQUIRED)}")
    content = {"parameters": parameters, "runs": runs}
    if measurements is not None:
        if not isinstance(measurements, dict):
            raise ValueError(f"measurements must be a dict, got {type(measurements).__name__}")
        content["measurements"] = measurements
    return checkpoint.atomic_write(
        path, lambda file: json.dump(content, file, indent=1, default=str), binary=False)
