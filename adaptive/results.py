"""The results file every training chapter writes.

``{"parameters": {...}, "runs": [{"method", "tau", "seed", "accuracy",
"mean_steps", "max_steps", ...}, ...]}``, written atomically so a reader
never sees half a file.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

REQUIRED = ("method", "tau", "seed", "accuracy", "mean_steps", "max_steps")


def write(path: str | os.PathLike, parameters: dict, runs: list[dict]) -> Path:
    """Check that each run has the required fields and write the file atomically."""
    for index, run in enumerate(runs):
        missing = [key for key in REQUIRED if key not in run]
        if missing:
            raise ValueError(f"runs[{index}] lacks {', '.join(missing)}; every run needs {', '.join(REQUIRED)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(handle, "w") as file:
        json.dump({"parameters": parameters, "runs": runs}, file, indent=1, default=str)
    os.replace(temporary, path)
    return path
