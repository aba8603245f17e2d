"""Atomic checkpoints, read without running any code they hold, so that nothing a user trained is lost.

``save`` writes to a temporary file beside the target and renames it into
place, so a crash leaves either the old checkpoint or the new one, never half
of one. ``read`` loads a checkpoint with ``torch.load(weights_only=True)``: it
holds tensors and plain values only (numbers, strings, None, lists, tuples,
dicts), so a foreign pickle is refused without being run. A file that is not a
checkpoint of this package (empty, truncated, not a torch file, damaged, holding
other objects, not a dict with ``"config"`` and ``"state"``) is refused with a
``ValueError`` that names it, says what is wrong and gives the command that
removes it. ``load`` reads the checkpoint a run would resume from and refuses
one made with another configuration, listing the differences.
"""
from __future__ import annotations

import glob
import os
import pickle
import shlex
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import torch


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], binary: bool = True) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it into place (and remove
    the temporary files of earlier writes to ``path`` that were killed before their rename)."""
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
        for stale in path.parent.glob(glob.escape(path.name) + "*.tmp"):   # left by a write that was killed
            stale.unlink(missing_ok=True)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def save(path: str | os.PathLike, payload: dict) -> None:
    """Write ``payload`` (which must hold a ``"config"`` dict) to ``path`` atomically."""
    atomic_write(path, lambda file: torch.save(payload, file))


def _remove_it(path: Path) -> str:
    """The end of every refusal: the command that removes ``path``, and what follows."""
    return f"Remove it with\n    rm {shlex.quote(str(path))}\nand a run resuming from it starts afresh."


def _zip_damage(path: Path) -> str | None:
    """What is wrong with ``path`` as the zip archive ``torch.save`` writes; None if it is a whole one."""
    if not zipfile.is_zipfile(path):           # a truncated archive has lost its index, at the end
        return "it is truncated or not a torch file"
    try:
        with zipfile.ZipFile(path) as archive:
            member = archive.testzip()         # the first member whose checksum fails, if any
    except (zipfile.BadZipFile, EOFError, ValueError):
        return "it is truncated or not a torch file"
    return None if member is None else f"it is a damaged torch file (its part {member} fails its checksum)"


def read(path: str | os.PathLike) -> dict:
    """The checkpoint at ``path``, loaded on the CPU without running any code it may hold.

    Raises:
        ValueError: ``path`` does not exist, is empty, is truncated or not a torch file, is a
            damaged one (a checksum fails), or is a torch file that is not a checkpoint of this
            package (a pickle of other objects than tensors and plain values, or not a dict with
            ``"config"`` and ``"state"``); the message names the file and gives the command that
            removes it.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"the checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise ValueError(f"refusing the checkpoint {path}: it is empty. {_remove_it(path)}")
    damage = _zip_damage(path)
    if damage is not None:
        raise ValueError(f"refusing the checkpoint {path}: {damage}. {_remove_it(path)}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:             # the safe unpickler met something else than tensors and plain values
        raise ValueError(f"refusing the checkpoint {path}: it is a torch file but not a checkpoint of this "
                         f"package: it holds objects other than tensors and plain values (none was unpickled, "
                         f"so nothing in it ran). {_remove_it(path)}") from None
    except (RuntimeError, EOFError, KeyError, ValueError) as error:     # whole, but not what torch.save writes
        raise ValueError(f"refusing the checkpoint {path}: it is a damaged torch file (torch raised "
                         f"{type(error).__name__}: {str(error).split('. ')[0]}). {_remove_it(path)}") from None
    if not (isinstance(payload, dict) and isinstance(payload.get("config"), dict) and "state" in payload):
        raise ValueError(f"refusing the checkpoint {path}: it is a torch file but not a checkpoint of this "
                         f"package (it holds a {type(payload).__name__}, not a dict with 'config' and "
                         f"'state'). {_remove_it(path)}")
    return payload


def load(path: str | os.PathLike, config: dict) -> dict | None:
    """The checkpoint at ``path`` if there is one (``read``); None if not.

    Raises:
        ValueError: ``path`` is not a checkpoint of this package (``read``), or it was made
            with a different configuration; the message lists each differing key with both
            values, and gives the command that removes the file.
    """
    path = Path(path)
    if not path.exists():
        return None
    payload = read(path)
    saved = payload["config"]
    keys = sorted(set(saved) | set(config))
    differences = [f"{key}: checkpoint has {saved.get(key)!r}, this run has {config.get(key)!r}"
                   for key in keys if saved.get(key) != config.get(key)]
    if differences:
        raise ValueError(f"refusing to resume from {path}: it was made with another configuration:\n  "
                         + "\n  ".join(differences)
                         + f"\nChoose another checkpoint directory, or: {_remove_it(path)}")
    return payload
