"""Many small CPU trainings at once: one process per worker, one torch thread per process.

Small models use a CPU core badly from several threads, so a grid of runs goes faster as
that many single-threaded processes. The processes are *spawned* (fresh interpreters, not
forks of this one, whose torch threads and open files a fork would copy), so ``function``
must be importable: a module-level function, or a ``functools.partial`` of one.

A stopped grid leaves no process behind:

- Interrupted here (Ctrl-C, papermill's timeout, which interrupts the kernel, SIGTERM, an
  exception from one run): the pending runs are cancelled and the running workers killed
  at once, instead of finishing the trainings they hold.
- This process killed outright (``kill -9``): each worker notices that its parent died and
  exits (``_exit_with_parent``).
- A worker killed (the out-of-memory killer): the grid stops with an error naming the item
  the worker ran.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path

import torch
from tqdm import tqdm

from .. import _checks

PR_SET_PDEATHSIG = 1          # linux/prctl.h: the signal a process gets when its parent dies
PARENT_CHECK_SECONDS = 0.5    # how often a worker's watchdog looks for its parent

# In a worker process: a shared array of one entry per item, the pid of the worker that runs
# the item, 0 while none does. The parent reads it to tell which item a dead worker ran.
_running_items = None


# -------------------------------------------------------------------------- in a worker


def _start_worker(parent_pid: int, running_items) -> None:
    """Each worker process starts with one torch thread and exits when its parent dies."""
    global _running_items
    _running_items = running_items
    torch.set_num_threads(1)
    _exit_with_parent(parent_pid)


def _exit_with_parent(parent_pid: int) -> None:
    """End this process soon after the process ``parent_pid`` (its parent) ends.

    On Linux the kernel sends SIGKILL the moment the parent ends (``prctl(PR_SET_PDEATHSIG)``).
    Strictly, it does so when the parent's *thread* that started this process ends: Python
    3.11's ProcessPoolExecutor starts spawned workers from ``submit``, in the thread that
    calls ``map_in_processes``, which outlives the pool. Everywhere, a watchdog thread also
    checks twice a second that the parent is still this process's parent (an orphan gets a
    new one).
    """
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:        # the parent died before prctl, so no signal will come
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="parent-watchdog", daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    """The watchdog: end this process once ``parent_pid`` is no longer its parent."""
    while os.getppid() == parent_pid:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(1)


def _run_item(function: Callable, position: int, item):
    """``function(item)``, recording meanwhile that this worker runs item number ``position``."""
    _running_items[position] = os.getpid()
    try:
        return function(item)
    finally:
        _running_items[position] = 0


# -------------------------------------------------------------------------- in the parent


def map_in_processes(function: Callable, items: Iterable, workers: int = 1, desc: str = "runs") -> list:
    """``[function(item) for item in items]``, in that order, with a progress bar.

    ``workers`` > 1 runs that many spawned processes with one torch thread each; ``workers``
    = 1 (or a single item) runs in this process, with its threads as they are. An exception
    from one item stops the others at once and is raised here, with a note naming the item.
    """
    _checks.positive_int("workers", workers)
    items = list(items)
    with tqdm(total=len(items), desc=desc) as bar:
        if workers == 1 or len(items) < 2:
            results = []
            for position, item in enumerate(items):
                try:
                    results.append(function(item))
                except Exception as error:
                    _name_the_item(error, position, item)
                    raise
                bar.update(1)
            return results
        return _map_in_workers(function, items, workers, bar)


def train_many(train: Callable, runs: Iterable[tuple[object, str | Path]], workers: int = 1) -> list[dict]:
    """Each (config, checkpoint_dir) of ``runs`` trained by ``train(config, checkpoint_dir, progress=False)``,
    ``workers`` processes at a time; the rows in the order of ``runs``.

    ``train`` is a chapter's trainer (``adaptive.clevr.train.train``, ``adaptive.spatial.train.train``),
    a module-level function; a run that has finished is read from its checkpoint, not trained again.
    """
    return map_in_processes(functools.partial(_train_quietly, train),
                            [(config, str(folder)) for config, folder in runs], workers)


def _train_quietly(train: Callable, run: tuple[object, str]) -> dict:
    config, folder = run
    return train(config, folder, progress=False)


def _name_the_item(error: Exception, position: int, item) -> None:
    """Add to ``error``'s traceback which item raised it (a grid's items are often alike)."""
    error.add_note(f"raised by item {position} of map_in_processes: {item!r}")


def _map_in_workers(function: Callable, items: list, workers: int, bar: tqdm) -> list:
    """``map_in_processes`` with ``workers`` spawned processes; the progress bar counts the
    items as they finish, in any order."""
    context = get_context("spawn")
    running_items = context.RawArray("q", len(items))      # the workers' _running_items, all 0
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                               initargs=(os.getpid(), running_items))
    results = [None] * len(items)
    try:
        with _sigterm_raises_system_exit():
            positions = {pool.submit(_run_item, function, position, item): position
                         for position, item in enumerate(items)}
            for future in as_completed(positions):
                position = positions[future]
                try:
                    results[position] = future.result()
                except BrokenProcessPool:
                    processes = _worker_processes(pool)
                    pool.shutdown()                        # the pool ends the other workers itself: wait for it
                    raise _worker_died(processes, items, running_items, workers) from None
                except Exception as error:
                    _name_the_item(error, position, items[position])
                    raise
                bar.update(1)
        pool.shutdown()                                    # every worker is idle: they exit at once
    except BaseException:
        _stop_workers(pool)
        raise
    return results


@contextlib.contextmanager
def _sigterm_raises_system_exit():
    """While the block runs, SIGTERM raises ``SystemExit(143)`` here, as Ctrl-C raises
    KeyboardInterrupt, so that the workers are stopped before this process exits.

    Only where SIGTERM has its default action (which ends the process without cleaning up)
    and only in the main thread, the one thread where Python runs signal handlers.
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return

    def exit_on_sigterm(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, exit_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _worker_processes(pool: ProcessPoolExecutor) -> list:
    """The pool's worker processes (multiprocessing.Process objects).

    ProcessPoolExecutor does not publish them, and its ``shutdown`` waits for the running
    items to finish; this reads its private ``_processes`` dict (pid -> process), set from its
    construction until ``shutdown``, and is the one place that does.
    """
    return list((pool._processes or {}).values())


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel the items not started and kill the workers now, whatever they are running.

    The pool's manager thread reaps dead workers too, and a worker it reaps first still looks
    alive here until it has; so this also waits for that thread (private, as ``_processes``).
    """
    processes = _worker_processes(pool)
    manager = pool._executor_manager_thread
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.kill()
    for process in processes:
        process.join()
    if manager is not None:
        manager.join(timeout=10)


def _worker_died(processes: list, items: list, running_items, workers: int) -> BrokenProcessPool:
    """The error to raise when a worker process ended in the middle of the map.

    ``processes``: the pool's workers, all ended. When one dies, the pool ends the others with
    SIGTERM, so the dead one is the worker that ended some other way; ``running_items`` (the
    workers' ``_running_items``) tells which item it ran.
    """
    dead = {process.pid: process.exitcode for process in processes
            if process.exitcode not in (None, -signal.SIGTERM)}
    ran = [position for position, pid in enumerate(running_items) if pid in dead]
    if ran:
        position = ran[0]
        how = _exit_description(dead[running_items[position]])
        what = f"while it ran item {position} of {len(items)}: {items[position]!r}"
    else:
        codes = sorted({_exit_description(code) for code in dead.values()}) or ["unknown exit code"]
        running = [position for position, pid in enumerate(running_items) if pid]
        how = ", ".join(codes)
        what = f"while items {running} were running" if running else "between items"
    return BrokenProcessPool(
        f"a worker process of map_in_processes died ({how}) {what}, so the pool stopped. If it ran out of "
        f"memory (the kernel's out-of-memory killer sends SIGKILL), run fewer workers (workers={workers} "
        f"now) or make each run use less memory.")


def _exit_description(exit_code: int) -> str:
    """A process's exit code in words: ``killed by SIGKILL`` for -9, ``exit code 3`` for 3."""
    if exit_code >= 0:
        return f"exit code {exit_code}"
    with contextlib.suppress(ValueError):                 # a signal without a name, e.g. SIGRTMIN + 1
        return f"killed by {signal.Signals(-exit_code).name}"
    return f"killed by signal {-exit_code}"
