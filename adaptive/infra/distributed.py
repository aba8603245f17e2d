"""Data-parallel training: one process per device, launched by ``torchrun``.

``torchrun --nproc_per_node=N -m adaptive.clevr.train ...`` (or ``adaptive.spatial.train``)
starts N processes and sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; ``setup`` joins them
in a process group (NCCL on CUDA, Gloo on the CPU). A plain ``python -m ...`` (no
``WORLD_SIZE``, or 1) is a world of one and uses no process group at all, so both paths run
the same code.

Each rank reads a disjoint shard of the data (``shard``; the CLEVR loader's
``ShardedEpochShuffle``) and the sums of the metrics are all-reduced (``all_reduce_sum``), so
every rank ends with the same numbers.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .. import _checks


@dataclass(frozen=True)
class Context:
    """Where this process stands: its rank among ``world`` processes and its device."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    owns_group: bool = False              # whether ``setup`` created the process group

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints and results and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from None


def setup(device: str) -> Context:
    """Join the process group that ``torchrun`` describes, or run alone.

    Under ``torchrun`` with ``WORLD_SIZE`` > 1, a CUDA ``device`` becomes ``cuda:LOCAL_RANK`` and
    the backend is NCCL; on the CPU it is Gloo. A process group that the caller already
    initialised (e.g. with ``torch.multiprocessing.spawn``) is used as it is and left open.
    """
    device = _checks.device(device)
    world = dist.get_world_size() if dist.is_initialized() else _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return Context(device=device)
    local_rank = _env_int("LOCAL_RANK", 0)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Context(rank=dist.get_rank(), world=dist.get_world_size(), device=device, owns_group=owns)


def teardown(context: Context) -> None:
    """Leave the process group if ``setup`` created it."""
    if context.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(context: Context) -> None:
    if context.distributed:
        dist.barrier()


def main_first(context: Context, make):
    """``make()`` on the main rank first (it may write a file the others then read), then on the
    others once it is done. An error of the main rank is raised there after the barrier, so that
    no rank is left waiting at it."""
    failure = result = None
    if context.is_main:
        try:
            result = make()
        except ValueError as error:
            failure = error
    barrier(context)
    if failure is not None:
        raise failure
    return result if context.is_main else make()


def all_reduce_sum(values: torch.Tensor, context: Context) -> torch.Tensor:
    """The element-wise sum of ``values`` over all ranks (``values`` itself when alone)."""
    if context.distributed:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def check_in_sync(module: torch.nn.Module, context: Context) -> None:
    """Raise RuntimeError when the ranks' copies of ``module`` differ.

    Data parallelism keeps every replica identical; a gradient that bypassed the
    synchronisation would let them drift apart silently. One float64 checksum per rank.
    """
    if not context.distributed:
        return
    with torch.no_grad():
        mine = torch.stack([p.detach().double().sum() for p in module.parameters()]).sum()
        gathered = [torch.zeros_like(mine) for _ in range(context.world)]
        dist.all_gather(gathered, mine)
    sums = [float(g) for g in gathered]
    if any(s != sums[0] for s in sums):
        raise RuntimeError(f"the ranks' model replicas differ (parameter sums {sums}); "
                           f"gradients were not synchronised")


def shard(n: int, rank: int, world: int) -> list[int]:
    """Rows rank, rank + world, ... of 0..n-1: the disjoint share of one rank (no padding)."""
    return list(range(rank, n, world))
