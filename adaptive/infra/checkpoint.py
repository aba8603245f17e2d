"""Atomic checkpoints, so that nothing a user trained is lost.

``save`` writes to a temporary file beside the target and renames it into
place, so a crash leaves either the old checkpoint or the new one, never half
of one. ``load`` refuses a checkpoint made with another configuration and
lists the differences.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import torch


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], binary: bool = True) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        os.chmod(temporary, 0o644)                    # mkstemp makes files private
        with os.fdopen(handle, "wb" if binary else "w") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def save(path: str | os.PathLike, payload: dict) -> None:
    """Write ``payload`` (which must hold a ``"config"`` dict) to ``path`` atomically."""
    atomic_write(path, lambda file: torch.save(payload, file))


def load(path: str | os.PathLike, config: dict) -> dict | None:
    """The checkpoint at ``path`` if there is one; None if not.

    Raises:
        ValueError: the checkpoint was made with a different configuration; the
            message lists each differing key with both values.
    """
    path = Path(path)
    if not path.exists():
        return None
    payload = torch.load(path, map_location="cpu", weights_only=False)
    saved = payload.get("config", {})
    keys = sorted(set(saved) | set(config))
    differences = [f"{key}: checkpoint has {saved.get(key)!r}, this run has {config.get(key)!r}"
                   for key in keys if saved.get(key) != config.get(key)]
    if differences:
        raise ValueError(f"refusing to resume from {path}: it was made with another configuration:\n  "
                         + "\n  ".join(differences)
                         + "\nDelete the file or choose another checkpoint directory to start afresh.")
    return payload
