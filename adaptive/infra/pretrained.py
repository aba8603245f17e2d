"""Pretrained models shipped with the book: small files, a manifest, and the command that made each.

A run that takes longer than a default build can afford is trained once by the package's own
trainer, from a recorded command, and its weights are committed under ``pretrained/``. A
chapter then *evaluates* them in the build, so every number it plots is still computed there,
and retrains them when asked (``-p retrain True``). What makes such a file honest is its
manifest entry, ``pretrained/manifest.json``::

    {"entries": {"<name>": {"file": "parity/act-seed0.pt",     # relative to pretrained/
                            "sha256": "...", "bytes": 53180,
                            "command": "python -m adaptive.parity.pretrain rising16",
                            "seed": 0, "commit": "2492984",     # the code that trained it
                            "machine": {...},                   # torch, CPU capability, processor
                            "config": {...},                    # the run's whole configuration
                            "curve": [{"update": 250, ...}, ...]}}}

* ``record`` writes a model file (an ``adaptive.infra.checkpoint`` file: ``{"config", "state",
  ...}``, read back without running any code) and its entry, both atomically.
* ``load`` returns a file's payload after checking its hash against the manifest, and refuses
  a missing, changed or unlisted file with the command that remakes it.
* ``verify`` lists everything wrong with a folder: a missing or changed file, a file no entry
  names, an entry without a field, a folder over ``SIZE_LIMIT``. The test suite asserts it
  lists nothing.
* ``same_machine`` says whether this machine is the one an entry was trained on: there,
  retraining from the recorded command repeats the recorded curve bit for bit; on another,
  float rounding differs (CPU kernels, thread layout) and the curve agrees to rounding at first,
  then drifts, as two runs on two machines do.

Command line::

    python -m adaptive.infra.pretrained verify      # exit status 1 and the problems, if any
    python -m adaptive.infra.pretrained list        # name, file, size, command of every entry
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

from . import checkpoint

DIRECTORY = Path("pretrained")               # relative to the repository root, where chapters run
MANIFEST = "manifest.json"
SIZE_LIMIT = 50 * 2**20                      # bytes: every pretrained file of the repository together
FIELDS = ("file", "sha256", "bytes", "command", "seed", "commit", "machine", "config", "curve")


def sha256(path: str | os.PathLike) -> str:
    """The hex SHA-256 of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def commit() -> str:
    """The commit of the code this process runs, ``+dirty`` when tracked files outside the pretrained
    folder have changes (the models and manifest a grid is recording are no part of the code)."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True,
                              text=True, check=True, timeout=30).stdout.strip()
        changes = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                  f":(exclude){DIRECTORY}"], cwd=root, capture_output=True, text=True, check=True,
                                 timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if changes else "")


def _cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else ``platform.processor()``): kernels of one
    instruction set round differently on an AMD EPYC and on an Intel Xeon."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


# Variables that hold torch's, oneDNN's and MKL's CPU kernels to narrower vector instructions than
# the CPU has (e.g. AVX2 on an AVX512 CPU), so that it rounds as a CPU of those instructions does.
KERNEL_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def kernel_variables() -> dict:
    """The ``KERNEL_VARIABLES`` this process runs with ({} when its kernels use all the CPU has)."""
    return {name: os.environ[name] for name in KERNEL_VARIABLES if name in os.environ}


def machine() -> dict:
    """What decides float rounding on a CPU, beyond the command (which fixes the threads a run uses):
    torch's version, the vector instructions its kernels use, the processor and its model. (Entries
    recorded before the model was added lack it, so they count as from another machine.)"""
    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "processor": platform.machine(), "cpu": _cpu_model()}


def same_machine(entry: dict) -> bool:
    """Whether this process rounds floats as the one that trained ``entry`` did (``machine``)."""
    return entry.get("machine") == machine()


# The kernel variables that hold an AVX512 CPU to the kernels of a CPU with fewer instructions.
HELD_BACK = {"AVX2": dict(zip(KERNEL_VARIABLES, ("avx2", "AVX2", "AVX2")))}


def kernels_to_repeat(entry: dict) -> dict[str, str] | None:
    """The kernel variables under which a new process on this machine rounds as the one that trained
    ``entry`` did: {} on that machine (``same_machine``); ``HELD_BACK[c]`` on an AVX512 CPU of the same
    model and torch where ``entry`` was trained with the instructions c (AVX2); None elsewhere."""
    if same_machine(entry):
        return {}
    recorded, here = entry.get("machine") or {}, machine()
    held = HELD_BACK.get(recorded.get("cpu_capability"))
    if held is None or here["cpu_capability"] != "AVX512" or kernel_variables():
        return None
    return held if {**here, "cpu_capability": recorded["cpu_capability"]} == recorded else None


def manifest(directory: str | os.PathLike = DIRECTORY) -> dict[str, dict]:
    """The entries of ``<directory>/manifest.json`` by name; {} when there is no manifest yet."""
    path = Path(directory) / MANIFEST
    if not path.exists():
        return {}
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"the pretrained manifest {path} is not valid JSON ({error})") from None
    if not isinstance(content, dict) or not isinstance(content.get("entries"), dict):
        raise ValueError(f"the pretrained manifest {path} must be a JSON object with an \"entries\" object")
    return content["entries"]


def _write_manifest(directory: Path, entries: dict[str, dict]) -> None:
    content = {"entries": dict(sorted(entries.items()))}
    checkpoint.atomic_write(directory / MANIFEST, lambda file: json.dump(content, file, indent=1), binary=False)


def record(name: str, payload: dict, *, command: str, seed: int, curve: list[dict],
           directory: str | os.PathLike = DIRECTORY, file: str | None = None, extra: dict | None = None) -> dict:
    """Save a trained model as ``<directory>/<file>`` and enter it in the manifest; return the entry.

    Args:
        name: the entry's name, e.g. ``"parity/rising16/act-seed0"``.
        payload: what the file holds: tensors and plain values, with ``"config"`` (the run's whole
            configuration, a dict) and ``"state"`` (e.g. the model's ``state_dict``).
        command: the shell command that trained it, run from the repository root.
        seed: the run's seed.
        curve: the run's learning curve, as its trainer recorded it.
        directory: the pretrained folder.
        file: the file's path inside ``directory`` (default ``<name>.pt``).
        extra: more plain values for the entry, e.g. ``{"train_seconds": 812.5}``.

    The entry also records ``kernel_variables`` where this process holds its kernels back
    (``KERNEL_VARIABLES``): its ``machine`` then names the instructions they used.
    """
    if not isinstance(name, str) or not name or name.startswith("/") or ".." in name.split("/"):
        raise ValueError(f"name must be a non-empty relative name such as 'parity/act-seed0', got {name!r}")
    if not isinstance(payload, dict) or not isinstance(payload.get("config"), dict) or "state" not in payload:
        raise ValueError("payload must be a dict with 'config' (a dict) and 'state'")
    if not isinstance(command, str) or not command.strip():
        raise ValueError(f"command must be the shell command that trained the model, got {command!r}")
    directory = Path(directory)
    relative = file or f"{name}.pt"
    checkpoint.save(directory / relative, payload)
    entry = {"file": relative, "sha256": sha256(directory / relative), "bytes": (directory / relative).stat().st_size,
             "command": command, "seed": int(seed), "commit": commit(), "machine": machine(),
             "config": payload["config"], "curve": curve, **(extra or {})}
    if kernel_variables():
        entry["kernel_variables"] = kernel_variables()          # how this process held its kernels back
    entries = manifest(directory)
    entries[name] = entry
    _write_manifest(directory, entries)
    return entry


def load(name: str, directory: str | os.PathLike = DIRECTORY) -> tuple[dict, dict]:
    """A pretrained model's payload and manifest entry, after checking its hash.

    Raises:
        ValueError: no entry has this name (the message lists those there are), the file is
            missing, or its hash is not the manifest's; the message gives the entry's command.
    """
    directory = Path(directory)
    entries = manifest(directory)
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none"
        raise ValueError(f"no pretrained model named {name!r} in {directory / MANIFEST}; it holds: {known}")
    entry = entries[name]
    path = directory / entry["file"]
    remake = f"Retrain it from the repository root with\n    {entry['command']}"
    if not path.is_file():
        raise ValueError(f"the pretrained model {name!r} lacks its file {path}. {remake}")
    found = sha256(path)
    if found != entry["sha256"]:
        raise ValueError(f"the pretrained model {name!r} at {path} has changed since it was recorded: its "
                         f"SHA-256 is {found}, the manifest says {entry['sha256']}. Restore it with "
                         f"`git checkout -- {path}`, or: {remake}")
    return checkpoint.read(path), entry


def origin(name: str, entry: dict) -> dict:
    """What a results row of a shipped model records about it: the entry's name and the commit that trained it."""
    return {"name": name, "commit": entry["commit"]}


def add_directory_argument(parser: argparse.ArgumentParser) -> None:
    """``--directory``, the pretrained folder, for a command that trains and records models."""
    parser.add_argument("--directory", default=str(DIRECTORY), help=f"the pretrained folder (default {DIRECTORY})")


def verify(directory: str | os.PathLike = DIRECTORY) -> list[str]:
    """Everything wrong with a pretrained folder, one line each; [] when nothing is."""
    directory = Path(directory)
    try:
        entries = manifest(directory)
    except ValueError as error:
        return [str(error)]
    problems, listed = [], set()
    for name, entry in entries.items():
        missing = [field for field in FIELDS if field not in entry]
        if missing:
            problems.append(f"{name}: the entry lacks {', '.join(missing)}")
            continue
        path = directory / entry["file"]
        listed.add(path.resolve())
        if not path.is_file():
            problems.append(f"{name}: its file {path} is missing")
        elif sha256(path) != entry["sha256"]:
            problems.append(f"{name}: {path} does not match its SHA-256 in the manifest")
    files = [path for path in directory.rglob("*") if path.is_file() and path.name != MANIFEST]
    problems += [f"{path}: no manifest entry names this file" for path in files if path.resolve() not in listed]
    total = sum(path.stat().st_size for path in files)
    if total > SIZE_LIMIT:
        problems.append(f"{directory}: its files hold {total / 2**20:.1f} MiB, over the {SIZE_LIMIT / 2**20:.0f} MiB "
                        f"the repository allows its pretrained models")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adaptive.infra.pretrained",
                                     description="Check or list the pretrained models and their manifest.")
    parser.add_argument("action", choices=("verify", "list"))
    parser.add_argument("--directory", default=str(DIRECTORY), help="the pretrained folder (default pretrained)")
    args = parser.parse_args(argv)
    if args.action == "verify":
        problems = verify(args.directory)
        print("\n".join(problems) if problems else f"{args.directory}: every file matches its manifest entry")
        return 1 if problems else 0
    for name, entry in manifest(args.directory).items():
        print(f"{name}\t{entry.get('file')}\t{entry.get('bytes', 0) / 1024:.0f} KiB\t{entry.get('command')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
