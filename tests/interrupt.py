"""A trainer stopped in the middle of a run, then run again to its end.

``stopped_after_a_save`` stops a trainer in this process right after a checkpoint is saved;
``start`` / ``finish`` run a trainer's command line in a subprocess, to kill it for real.

What the CLEVR and spatial tests show with it: the same seed gives the same numbers, interrupted
or not. The kill is a real ``SIGKILL`` at a moment the trainer does not choose: half the time
between its last two checkpoints after the last, so between two checkpoints, in the middle of an
epoch. Every run gets one thread (``OMP_NUM_THREADS=1``): bit-identical numbers need the same
thread count, and the machine's cores are shared.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from adaptive.infra import checkpoint

REPO = Path(__file__).resolve().parents[1]


class Interrupted(Exception):
    """Raised right after a checkpoint was saved: the run stopped there."""


@contextlib.contextmanager
def stopped_after_a_save(monkeypatch, match: str | None = None):
    """Within the block, the first ``checkpoint.save`` completes and then raises ``Interrupted``
    ("stopped at update 3"); the block must end so, with a message matching ``match``."""
    original = checkpoint.save

    def save_then_stop(path, payload):
        original(path, payload)
        counts = [f"{key} {value}" for key, value in payload["state"].items() if type(value) is int]
        raise Interrupted("stopped at " + ", ".join(counts))
    with monkeypatch.context() as patch:
        patch.setattr(checkpoint, "save", save_then_stop)
        with pytest.raises(Interrupted, match=match):
            yield
ONE_THREAD = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def start(module: str, arguments: list[str], log: Path) -> subprocess.Popen:
    """``python -m module arguments...`` in the repository, its output going to ``log``."""
    with open(log, "w") as output:
        return subprocess.Popen([sys.executable, "-m", module, *arguments], cwd=REPO, env=ONE_THREAD,
                                stdout=output, stderr=subprocess.STDOUT)


def finish(process: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    """Wait for ``process`` to end; fail with the end of its output unless it succeeded."""
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"{process.args} ran past {timeout} s:\n{log.read_text()[-3000:]}") from None
    assert code == 0, f"{process.args} exited with {code}:\n{log.read_text()[-3000:]}"


def _stamp(path: Path) -> tuple[int, int] | None:
    """What changes whenever the checkpoint is written (an atomic write renames a new file into place)."""
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return status.st_ino, status.st_mtime_ns


def kill_between_checkpoints(process: subprocess.Popen, path: Path, log: Path, writes: int = 2,
                             timeout: float = 300) -> dict:
    """``SIGKILL`` ``process`` half a checkpoint interval after it wrote ``path`` ``writes`` times;
    return the checkpoint it left."""
    seen, times = None, []
    deadline = time.monotonic() + timeout
    while len(times) < writes:
        if process.poll() is not None:
            raise AssertionError(f"the run ended before writing {path} {writes} times: make it longer\n"
                                 f"{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"{path} was not written {writes} times in {timeout} s")
        stamp = _stamp(path)
        if stamp is not None and stamp != seen:
            seen = stamp
            times.append(time.monotonic())
        time.sleep(0.002)
    time.sleep((times[-1] - times[-2]) / 2)
    running = process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert running, "the run ended before it could be killed: make it longer"
    return checkpoint.read(path)


def identical(a, b) -> bool:
    """Whether two checkpoint values are the same, tensors bit for bit (nested dicts, lists, tuples)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(identical(a[key], b[key]) for key in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(identical(x, y) for x, y in zip(a, b))
    return a == b
