"""Many small CPU trainings at once: one process per worker, one torch thread per process.

Small models use a CPU core badly from several threads, so a grid of runs goes faster as
that many single-threaded processes. The processes are *spawned* (fresh interpreters, not
forks of this one, whose torch threads and open files a fork would copy), so ``function``
must be importable: a module-level function, or a ``functools.partial`` of one.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import torch
from tqdm import tqdm

from .. import _checks


def _one_thread() -> None:
    """Each worker process starts with one torch thread."""
    torch.set_num_threads(1)


def map_in_processes(function: Callable, items: Iterable, workers: int = 1, desc: str = "runs") -> list:
    """``[function(item) for item in items]``, in that order, with a progress bar.

    ``workers`` > 1 runs that many spawned processes with one torch thread each; ``workers``
    = 1 (or a single item) runs in this process, with its threads as they are.
    """
    _checks.positive_int("workers", workers)
    items = list(items)
    results = []
    with tqdm(total=len(items), desc=desc) as bar, contextlib.ExitStack() as stack:
        mapped = map(function, items)                     # lazily: one item at a time, here
        if workers > 1 and len(items) > 1:
            pool = stack.enter_context(ProcessPoolExecutor(workers, mp_context=get_context("spawn"),
                                                           initializer=_one_thread))
            mapped = pool.map(function, items)            # results come back in the order of items
        for result in mapped:
            results.append(result)
            bar.update(1)
    return results
