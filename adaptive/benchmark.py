"""Benchmark: what the halting mechanisms cost, and what early exit saves.

Measured at a size where one step dominates the loop's own bookkeeping (a
wide residual MLP step), so the numbers say what the mechanisms cost, not
what Python costs:

1. training-update time of each mechanism through ``adaptive.loop.run``,
   against a plain hand-written loop of the same L steps with a loss on the
   last step's answer ("plain"); the ratio is the mechanism's overhead;
2. evaluation time with per-sample early exit against running all L steps,
   compared with the ideal speed-up ``L / mean steps`` and with what the bare
   steps achieve on the shrinking batch (on a CPU a step on a few rows costs
   more than its share of a full batch). To control the steps each sample
   takes, the step's halting logit switches on at a per-sample depth drawn
   uniformly from 1..L; the work of each step is real. The same evaluation
   without early exit (``Halting(early_exit=False)``: every step on the whole
   batch, then the rule's decisions) says whether dropping halted samples pays
   at this size: where the step is cheap, the loop's per-step bookkeeping costs
   more than the rows it saves. ``Halting(early_exit="auto")``, the loop's default, times the
   second step against its bookkeeping and falls back to that where the bookkeeping costs more
   than ``loop.BOOKKEEPING_SHARE`` of the step: its speed-up, and how often it fell back, are
   the last two columns. And the same evaluation dropping halted samples only once half
   the computed batch has halted (``Halting(compact_at=0.5)``): whether selecting the state at
   every halting step costs more than computing a few halted rows.

Timings alternate between the variants within one run, so machine noise hits
all of them alike (``adaptive.infra.benchmarking.interleaved``: ``repeats``
rounds, each timing at least ``min_seconds`` of repeated calls). A time is the
fastest round's; each ratio is that of the fastest rounds, reported with its
spread, the interquartile range of the round-by-round ratios relative to their
median (``adaptive.infra.benchmarking.ratio`` says why the fastest). Run::

    python -m adaptive.benchmark            # full size (width 2048, batch 512, L = 8)
    python -m adaptive.benchmark --quick    # a small version (width 256, batch 128), about 2.5 minutes
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

from . import _checks, loop
from .infra.benchmarking import (
    SHARPNESS,
    allocator,
    halt_from_depth,
    interleaved,
    ratio,
    steady_allocator,
    synchronize,
    write_report,
)
from .numerics import flush_denormals

LAZY_COMPACTION = 0.5     # the lazy variant's Halting.compact_at


class WideStep(nn.Module):
    """A residual MLP step: s <- s + tanh(W s + U x); answer and halting heads.

    The halting logit is +-``sharpness`` depending on whether the step index has
    reached the sample's assigned depth, plus the learned head's output, so the
    steps a sample takes are known in advance while the head is still trained.
    """

    def __init__(self, width: int, classes: int = 10, sharpness: float = SHARPNESS):
        super().__init__()
        self.mix = nn.Linear(width, width)
        self.inject = nn.Linear(width, width, bias=False)
        self.output = nn.Linear(width, classes)
        self.halt = nn.Linear(width, 1)
        self.sharpness = sharpness

    def initial_state(self, x: torch.Tensor, depth: torch.Tensor):
        zero = torch.zeros(x.shape[0], device=x.device)
        return (x, torch.zeros_like(x), depth.to(x.dtype), zero)

    def step(self, state):
        x, s, depth, n = state                              # (b, W), (b, W), (b,), (b,)
        n = n + 1
        s = s + torch.tanh(self.mix(s) + self.inject(x))
        switch = halt_from_depth(n, depth, self.sharpness)
        return self.output(s), switch + 0.01 * self.halt(s).squeeze(1), (x, s, depth, n)


@flush_denormals()                  # as training does; see its docstring
def measure(width: int = 2048, batch: int = 512, max_steps: int = 8, repeats: int = 15,
            device: str = "cpu", seed: int = 0, bf16: bool = False, min_seconds: float = 0.05) -> dict:
    """Run both measurements; returns a dict with the parameters and two tables.

    ``bf16``: the step under bfloat16 autocast on CUDA (the halting arithmetic stays float32);
    ignored on the CPU, and the parameters say what ran.
    """
    _checks.device(device)                      # refused before any compute if this machine lacks it
    use_bf16 = bf16 and torch.device(device).type == "cuda"
    torch.manual_seed(seed)
    model = WideStep(width).to(device)
    step = loop.bfloat16_step(model.step, use_bf16)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    generator = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(batch, width, device=device)
    target = torch.randint(0, 10, (batch,), device=device)
    depth = torch.randint(1, max_steps + 1, (batch,), device=device, generator=generator)

    def plain_train():
        state = model.initial_state(x, depth)
        for _ in range(max_steps):
            logits, _, state = step(state)
        loss = F.cross_entropy(logits, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        synchronize(device)

    def mechanism_train(method):
        halting = loop.Halting(method, max_steps, tau=0.01)

        def fn():
            out = loop.run(step, model.initial_state(x, depth), halting, target=target,
                           generator=generator)
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
            synchronize(device)
        return fn

    def evaluation(method, early_exit=True, compact_at=0.0):
        halting = loop.Halting(method, max_steps, tau=0.01, eval_mode="thresholded", early_exit=early_exit,
                               compact_at=compact_at)
        result = {"calls": 0, "fell_back": 0}

        def fn():
            result["out"] = loop.run(step, model.initial_state(x, depth), halting,
                                     training=False, generator=generator)
            result["calls"] += 1
            result["fell_back"] += not result["out"].early_exit
            synchronize(device)
        return fn, result

    train_fns = {"plain": plain_train, **{m: mechanism_train(m) for m in loop.METHODS}}
    eval_fns = {m: evaluation(m) for m in loop.METHODS}
    unrolled_fns = {m: evaluation(m, early_exit=False)[0] for m in loop.METHODS if m != "fixed"}
    lazy_fns = {m: evaluation(m, compact_at=LAZY_COMPACTION)[0] for m in loop.METHODS if m != "fixed"}
    auto_fns = {m: evaluation(m, early_exit="auto") for m in loop.METHODS if m != "fixed"}
    for fn, _ in eval_fns.values():          # each evaluation's steps, for its bare steps below
        fn()
    # The bare step on the batch sizes an early-exit run had (b_n samples still running at
    # step n): what the steps alone cost, without the loop. On a CPU a step on b rows costs
    # more than b / B of a step on B rows, so this is the best any early exit can realise.
    def bare_steps(steps_taken):
        def fn():
            with torch.no_grad():
                for n in range(1, max_steps + 1):
                    running = int((steps_taken >= n).sum())
                    if running:
                        step(model.initial_state(x[:running], depth[:running]))
            synchronize(device)
        return fn

    bare_fns = {name: bare_steps(result["out"].steps) for name, (_, result) in eval_fns.items()}

    calls = {**{f"train {name}": fn for name, fn in train_fns.items()},
             **{f"eval {name}": fn for name, (fn, _) in eval_fns.items()},
             **{f"bare {name}": fn for name, fn in bare_fns.items()},
             **{f"unrolled {name}": fn for name, fn in unrolled_fns.items()},
             **{f"lazy {name}": fn for name, fn in lazy_fns.items()},
             **{f"auto {name}": fn for name, (fn, _) in auto_fns.items()}}
    seconds = interleaved(calls, rounds=repeats, device=device, min_seconds=min_seconds)

    training_rows = []
    for name in train_fns:
        to_plain, spread = ratio(seconds[f"train {name}"], seconds["train plain"])
        training_rows.append({"mechanism": name, "ms_per_update": 1000 * min(seconds[f"train {name}"]),
                              "ratio_to_plain": to_plain, "ratio_spread": spread})
    eval_rows = []
    for name, (_, result) in eval_fns.items():
        mean_steps = result["out"].steps.float().mean().item()
        ideal = max_steps / mean_steps
        realised, realised_spread = ratio(seconds["eval fixed"], seconds[f"eval {name}"])
        achievable, _ = ratio(seconds["eval fixed"], seconds[f"bare {name}"])
        of_achievable, of_achievable_spread = ratio(seconds[f"bare {name}"], seconds[f"eval {name}"])
        unrolled = ratio(seconds["eval fixed"], seconds[f"unrolled {name}"])[0] if name in unrolled_fns else 1.0
        lazy = ratio(seconds["eval fixed"], seconds[f"lazy {name}"])[0] if name in lazy_fns else 1.0
        auto, auto_spread = ratio(seconds["eval fixed"], seconds[f"auto {name}"]) if name in auto_fns else (1.0, 0.0)
        auto_calls = auto_fns[name][1] if name in auto_fns else {"calls": 1, "fell_back": 0}
        eval_rows.append({"mechanism": name, "ms_per_batch": 1000 * min(seconds[f"eval {name}"]),
                          "mean_steps": mean_steps, "ideal_speedup": ideal, "achievable_speedup": achievable,
                          "realised_speedup": realised, "realised_spread": realised_spread,
                          "fraction_of_ideal": realised / ideal, "fraction_of_achievable": of_achievable,
                          "fraction_of_achievable_spread": of_achievable_spread,
                          "unrolled_speedup": unrolled, "lazy_compaction_speedup": lazy,
                          "early_exit_pays": realised > unrolled, "auto_speedup": auto, "auto_spread": auto_spread,
                          "auto_fell_back": auto_calls["fell_back"] / auto_calls["calls"]})
    return {"parameters": {"width": width, "batch": batch, "max_steps": max_steps, "repeats": repeats,
                           "min_seconds": min_seconds, "bf16": use_bf16, "device": device, "seed": seed,
                           "threads": torch.get_num_threads(), "allocator": allocator()},
            "training": training_rows, "evaluation": eval_rows}


def markdown(result: dict) -> str:
    """The two tables as Markdown; each ratio with its spread (the relative interquartile range
    of the round-by-round ratios) in brackets."""
    lines = ["| mechanism | ms per training update | ratio to plain loop (spread) |", "|---|---:|---:|"]
    lines += [f"| {r['mechanism']} | {r['ms_per_update']:.2f} | {r['ratio_to_plain']:.3f} ({r['ratio_spread']:.1%}) |"
              for r in result["training"]]
    lines += ["", "| mechanism | ms per batch | mean steps | ideal speed-up (L / mean steps) | "
              "achievable (bare steps) | realised (spread) | fraction of ideal | fraction of achievable (spread) | "
              "without early exit | compacting at half halted | early exit pays | auto (spread) | auto fell back |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    lines += [f"| {r['mechanism']} | {r['ms_per_batch']:.2f} | {r['mean_steps']:.2f} | "
              f"{r['ideal_speedup']:.2f} | {r['achievable_speedup']:.2f} | "
              f"{r['realised_speedup']:.2f} ({r['realised_spread']:.1%}) | {r['fraction_of_ideal']:.2f} | "
              f"{r['fraction_of_achievable']:.2f} ({r['fraction_of_achievable_spread']:.1%}) | "
              f"{r['unrolled_speedup']:.2f} | {r['lazy_compaction_speedup']:.2f} | "
              f"{'yes' if r['early_exit_pays'] else 'no'} | {r['auto_speedup']:.2f} ({r['auto_spread']:.1%}) | "
              f"{r['auto_fell_back']:.0%} |"
              for r in result["evaluation"] if r["mechanism"] != "fixed"]
    return "\n".join(lines)


# At --quick size one call takes well under a millisecond, so its timings need more rounds and longer
# timings to repeat: two back-to-back runs differed by up to 15 % on a ratio (41 % of the ratios within
# 5 %) with 15 rounds of 0.05 s, and by up to 8.5 % (85 % within 5 %) with 45 rounds of 0.1 s (~2.5 min)
QUICK = {"width": 256, "batch": 128, "repeats": 45, "min_seconds": 0.1}
FULL = {"width": 2048, "batch": 512, "repeats": 15, "min_seconds": 0.05}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=int, default=None, help="width of the step (default 2048; --quick: 256)")
    parser.add_argument("--batch", type=int, default=None, help="samples per batch (default 512; --quick: 128)")
    parser.add_argument("--max-steps", type=int, default=8, help="L, the steps of every run")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved timing rounds (default 15; --quick: 45)")
    parser.add_argument("--min-seconds", type=float, default=None,
                        help="the least time one timing lasts (default 0.05; --quick: 0.1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast of the step (CUDA only)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="small: width 256, batch 128, 45 rounds of 0.1 s")
    parser.add_argument("--json", default="build/benchmark.json", help="where to write the JSON")
    args = parser.parse_args(argv)
    sizes = {name: getattr(args, name) if getattr(args, name) is not None else default   # a flag given wins
             for name, default in (QUICK if args.quick else FULL).items()}
    for name in ("width", "batch", "repeats", "max_steps"):
        value = sizes.get(name, getattr(args, name))
        if value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if not sizes["min_seconds"] > 0:
        parser.error(f"--min-seconds must be > 0, got {sizes['min_seconds']}")
    result = measure(sizes["width"], sizes["batch"], args.max_steps, sizes["repeats"], args.device, args.seed,
                     args.bf16, sizes["min_seconds"])
    write_report(result, args.json, markdown(result))


if __name__ == "__main__":
    steady_allocator("adaptive.benchmark")              # timings of the computation, not of page faults
    main()
