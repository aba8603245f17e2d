"""Benchmark: a grid of parity runs trained one by one, in worker processes, and batched.

Chapter 3's grid (four fixed depths and four mechanisms at three penalties, two seeds: 32
runs) is trained three ways, with the same number of updates:

1. ``separate``: ``train`` for each run, one after another in this process, on one torch thread;
2. ``2 workers``: ``train_grid(..., workers=2)``, two processes training one run each at a time
   (how the chapter trains its grid);
3. ``batched``: ``train_batched(..., workers=2)``, the runs in two stacks of K models each
   computed as one (``adaptive.parity.batched``), one stack per process.

Each variant is timed once per round with ``adaptive.infra.benchmarking.timed``; the rounds
rotate the variants' order so that machine noise hits them alike. The table reports the fastest
round of each, runs per hour, the speed-up over ``2 workers``, and the same in CPU seconds (this
process's and its workers'), which other work on a shared machine disturbs far less than the
wall-clock time of two processes on two cores. Under the table, the largest difference between
the batched rows and the separate ones, at the first evaluation and at the end: they are the
same runs to float rounding, which long runs amplify (``adaptive.parity.batched``'s docstring).

The full grid trains 500 updates per run, with the chapter's evaluation every 250 updates (the
chapter trains 2000: ``--updates 2000`` measures that, in about ten minutes). The two variants
with processes pay for starting them, a few seconds each, whatever the number of updates, so
the speed-ups grow a little with it; ``--quick`` is mostly that start. Run::

    python -m adaptive.parity.benchmark                  # 32 runs of 500 updates, 2 rounds
    python -m adaptive.parity.benchmark --updates 2000   # the chapter's length
    python -m adaptive.parity.benchmark --quick          # 12 runs of 100 updates, 1 round
"""
from __future__ import annotations

import argparse
import resource

import torch

from .. import _checks
from ..infra.benchmarking import allocator, steady_allocator, timed, write_report
from .batched import train_batched
from .train import RunConfig, train, train_grid

FULL = {"updates": 500, "eval_every": 250, "taus": (1e-4, 1e-3, 1e-2), "seeds": (0, 1),
        "fixed_depths": (1, 2, 4, 8), "rounds": 2}
QUICK = {"updates": 100, "eval_every": 50, "taus": (1e-3,), "seeds": (0, 1), "fixed_depths": (1, 8), "rounds": 1}
WORKERS = 2


def grid(updates: int, eval_every: int, taus, seeds, fixed_depths, size: int = 8,
         max_steps: int = 8) -> list[RunConfig]:
    """Chapter 3's grid: the fixed depths, then ACT, DACT, PACT and PonderNet at every penalty, every seed."""
    common = dict(size=size, max_steps=max_steps, updates=updates, eval_every=eval_every)
    configs = [RunConfig("fixed", seed=seed, **{**common, "max_steps": depth})
               for depth in fixed_depths for seed in seeds]
    for tau in taus:
        for seed in seeds:
            configs += [RunConfig("act", tau=tau, seed=seed, **common),
                        RunConfig("dact", tau=tau, seed=seed, **common),
                        RunConfig("pact", tau=tau, seed=seed, eval_modes=("thresholded", "discrete", "relaxed"),
                                  **common),
                        RunConfig("pondernet", tau=tau, seed=seed, eval_modes=("discrete", "thresholded"), **common)]
    return configs


def cpu_time() -> float:
    """CPU seconds used so far by this process and by its children that have ended (the workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(configs: list[RunConfig], rounds: int = 1, device: str = "cpu") -> dict:
    """Time the three ways of training ``configs``; a dict of parameters, the table's rows and the agreement."""
    _checks.device(device)                      # refused before any compute if this machine lacks it
    def separate():
        threads = torch.get_num_threads()
        torch.set_num_threads(1)                          # as in a worker: what one core does
        try:
            return [row for config in configs for row in train(config, device, progress=False)]
        finally:
            torch.set_num_threads(threads)

    variants = {"separate": separate,
                f"{WORKERS} workers": lambda: train_grid(configs, device, workers=WORKERS),
                "batched": lambda: train_batched(configs, device, workers=WORKERS)}
    names = list(variants)
    seconds = {name: [] for name in names}
    cpu_seconds = {name: [] for name in names}
    rows = {}
    for index in range(rounds):
        for name in names[index % len(names):] + names[:index % len(names)]:
            before = cpu_time()
            seconds[name].append(timed(lambda: rows.__setitem__(name, variants[name]()), device))
            cpu_seconds[name].append(cpu_time() - before)
    wall, cpu = (min(seconds[f"{WORKERS} workers"]), min(cpu_seconds[f"{WORKERS} workers"]))
    table = [{"variant": name, "seconds": min(seconds[name]), "cpu_seconds": min(cpu_seconds[name]),
              "rounds": seconds[name], "cpu_rounds": cpu_seconds[name],
              "runs_per_hour": 3600 * len(configs) / min(seconds[name]),
              "speedup_over_workers": wall / min(seconds[name]),
              "cpu_speedup_over_workers": cpu / min(cpu_seconds[name])} for name in names]
    pairs = list(zip(rows["separate"], rows["batched"]))
    agreement = {"first_update": configs[0].eval_every,
                 "first_train_loss": max(abs(a["curve"][0]["train_loss"] - b["curve"][0]["train_loss"])
                                         for a, b in pairs),
                 "first_accuracy": max(abs(a["curve"][0]["accuracy"] - b["curve"][0]["accuracy"]) for a, b in pairs),
                 **{key: max(abs(a[key] - b[key]) for a, b in pairs) for key in ("accuracy", "mean_steps")}}
    return {"parameters": {"runs": len(configs), "updates": configs[0].updates, "eval_every": configs[0].eval_every,
                           "rounds": rounds, "workers": WORKERS, "device": device,
                           "threads": torch.get_num_threads(), "allocator": allocator()},
            "variants": table, "batched_minus_separate": agreement}


def markdown(result: dict) -> str:
    """The table as Markdown, with the agreement of the batched rows under it."""
    p = result["parameters"]
    lines = [f"{p['runs']} runs of {p['updates']} updates ({p['device']}, fastest of {p['rounds']} rounds)", "",
             "| variant | seconds | runs per hour | speed-up over 2 workers | CPU seconds | CPU speed-up |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['variant']} | {r['seconds']:.1f} | {r['runs_per_hour']:.0f} | {r['speedup_over_workers']:.2f} "
              f"| {r['cpu_seconds']:.1f} | {r['cpu_speedup_over_workers']:.2f} |" for r in result["variants"]]
    agreement = result["batched_minus_separate"]
    lines += ["", f"batched against separate, largest difference at update {agreement['first_update']}: "
                  f"train loss {agreement['first_train_loss']:.2e}, accuracy {agreement['first_accuracy']:.4f}; "
                  f"at the end: accuracy {agreement['accuracy']:.4f}, mean steps {agreement['mean_steps']:.4f}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--updates", type=int, default=None, help="updates per run (default 500; --quick: 100)")
    parser.add_argument("--rounds", type=int, default=None, help="timing rounds (default 2; --quick: 1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="a small, fast version: 12 runs of 100 updates")
    parser.add_argument("--json", default="build/parity_benchmark.json", help="where to write the JSON")
    args = parser.parse_args(argv)
    sizes = dict(QUICK if args.quick else FULL)
    for name in ("updates", "rounds"):
        if getattr(args, name) is not None:
            if getattr(args, name) < 1:
                parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
            sizes[name] = getattr(args, name)
    rounds = sizes.pop("rounds")
    result = measure(grid(**sizes), rounds, args.device)
    write_report(result, args.json, markdown(result))


if __name__ == "__main__":
    steady_allocator("adaptive.parity.benchmark")              # timings of the computation, not of page faults
    main()
