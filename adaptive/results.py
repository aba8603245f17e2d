"""The results file every training chapter writes.

``{"parameters": {...}, "runs": [{"method", "tau", "seed", "accuracy",
"mean_steps", "max_steps", ...}, ...]}``, written atomically so a reader
never sees half a file.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from . import checkpoint

REQUIRED = ("method", "tau", "seed", "accuracy", "mean_steps", "max_steps")


def write(path: str | os.PathLike, parameters: dict, runs: list[dict]) -> Path:
    """Check that each run has the required fields and write the file atomically."""
    for index, run in enumerate(runs):
        missing = [key for key in REQUIRED if key not in run]
        if missing:
            raise ValueError(f"runs[{index}] lacks {', '.join(missing)}; every run needs {', '.join(REQUIRED)}")
    return checkpoint.atomic_write(
        path, lambda file: json.dump({"parameters": parameters, "runs": runs}, file, indent=1, default=str),
        binary=False)
