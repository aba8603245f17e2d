"""The process pool: results in order, errors that name their item, and no process left behind.

The tests of a stopped grid run a real parent process (a script in tmp_path) whose two
workers write their pids and sleep for a minute; the test then stops the parent as a user,
papermill or the system would, and checks that the workers are gone within seconds.
"""
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from adaptive.infra import pool

REPO = Path(__file__).resolve().parents[1]
GONE_WITHIN_S = 20           # how soon the parent and its workers must be gone once it is stopped (a full
                             # suite on 2 busy cores once took over 5 s)
START_WITHIN_S = 60          # how long two spawned workers may take to import torch on a busy machine


def square(number: int) -> int:
    """A stand-in for a training: ``number ** 2``; a negative number fails, 0 takes a minute,
    and 13 kills its own worker process (as the out-of-memory killer would)."""
    if number < 0:
        raise ValueError(f"cannot train on the negative number {number}")
    if number == 0:
        time.sleep(60)
    if number == 13:
        os.kill(os.getpid(), signal.SIGKILL)
    return number * number


def test_results_keep_the_order_of_the_items():
    assert pool.map_in_processes(square, [3, 1, 2, 5], workers=2) == [9, 1, 4, 25]
    assert multiprocessing.active_children() == []


def test_an_error_names_its_item_and_stops_the_other_workers_at_once():
    started = time.monotonic()
    with pytest.raises(ValueError, match="negative number -2") as raised:
        pool.map_in_processes(square, [0, -2], workers=2)            # item 0 would run for a minute
    assert time.monotonic() - started < 30
    assert raised.value.__notes__ == ["raised by item 1 of map_in_processes: -2"]
    assert multiprocessing.active_children() == []
    with pytest.raises(ValueError, match="negative number -3") as raised:
        pool.map_in_processes(square, [4, -3], workers=1)             # in this process: the same note
    assert raised.value.__notes__ == ["raised by item 1 of map_in_processes: -3"]


def test_a_killed_worker_names_its_item_and_suggests_fewer_workers():
    message = r"worker process .* died \(killed by SIGKILL\) while it ran item 1 of 3: 13.*fewer workers \(workers=2"
    with pytest.raises(BrokenProcessPool, match=message):
        pool.map_in_processes(square, [2, 13, 3], workers=2)
    assert multiprocessing.active_children() == []


# ------------------------------------------------------------------------ a stopped grid

WORKLOAD = '''
import os
import time
from pathlib import Path


def record_pid_and_sleep(folder, item):
    """Write this worker's pid to <folder>/worker<item>.pid, then sleep for a minute."""
    written = Path(folder, f"worker{item}.pid.tmp")
    written.write_text(str(os.getpid()))
    written.replace(Path(folder, f"worker{item}.pid"))
    time.sleep(60)
'''

GRID = '''
import functools
import sys

import workload

from adaptive.infra import pool

if __name__ == "__main__":                  # spawned workers import this module too
    pool.map_in_processes(functools.partial(workload.record_pid_and_sleep, sys.argv[1]), [0, 1], workers=2)
'''


def _is_running(pid: int) -> bool:
    """Whether process ``pid`` runs; a zombie (ended, not yet reaped by its new parent) does not."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


def _wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def grid(tmp_path):
    """A parent process in the middle of a two-worker map, and its workers' pids."""
    (tmp_path / "workload.py").write_text(textwrap.dedent(WORKLOAD))
    (tmp_path / "grid.py").write_text(textwrap.dedent(GRID))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    with open(tmp_path / "stderr.txt", "w") as stderr:
        parent = subprocess.Popen([sys.executable, str(tmp_path / "grid.py"), str(tmp_path)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=stderr)
    pid_files = [tmp_path / f"worker{item}.pid" for item in (0, 1)]
    started = _wait_until(lambda: all(f.exists() for f in pid_files) or parent.poll() is not None, START_WITHIN_S)
    if not started or parent.poll() is not None:
        parent.kill()
        pytest.fail(f"the workers did not start; the parent's stderr:\n{(tmp_path / 'stderr.txt').read_text()}")
    workers = [int(f.read_text()) for f in pid_files]
    yield parent, workers
    parent.kill()
    parent.wait()
    for pid in workers:
        if _is_running(pid) and b"multiprocessing" in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGKILL)                 # a failed test leaves no sleeper behind either


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and uses prctl")


@linux_only
def test_killing_the_parent_ends_its_workers(grid):
    parent, workers = grid
    parent.send_signal(signal.SIGKILL)
    parent.wait(GONE_WITHIN_S)
    assert _wait_until(lambda: not any(_is_running(pid) for pid in workers), GONE_WITHIN_S)


@linux_only
@pytest.mark.parametrize(("stop", "exit_code"), [(signal.SIGINT, -signal.SIGINT),
                                                  (signal.SIGTERM, 128 + signal.SIGTERM)])
def test_interrupting_the_parent_ends_it_and_its_workers(grid, stop, exit_code):
    parent, workers = grid
    parent.send_signal(stop)
    assert parent.wait(GONE_WITHIN_S) == exit_code       # 143: SystemExit from the pool's SIGTERM handler
    assert _wait_until(lambda: not any(_is_running(pid) for pid in workers), GONE_WITHIN_S)
