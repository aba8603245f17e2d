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
   uniformly from 1..L; the work of each step is real.

Timings alternate between the variants within one run, so machine noise hits
all of them alike; the reported time is the median over repeats. Run::

    python -m adaptive.benchmark            # full size (width 2048, batch 512, L = 8)
    python -m adaptive.benchmark --quick    # a small, fast version
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from . import loop
from .infra.benchmarking import SHARPNESS, halt_from_depth, synchronize, write_report
from .numerics import flush_denormals


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


def _seconds(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


@flush_denormals()                  # as training does; see its docstring
def measure(width: int = 2048, batch: int = 512, max_steps: int = 8, repeats: int = 5,
            device: str = "cpu", seed: int = 0, bf16: bool = False) -> dict:
    """Run both measurements; returns a dict with the parameters and two tables.

    ``bf16``: the step under bfloat16 autocast on CUDA (the halting arithmetic stays float32);
    ignored on the CPU, and the parameters say what ran.
    """
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

    def evaluation(method):
        halting = loop.Halting(method, max_steps, tau=0.01, eval_mode="thresholded")
        result = {}

        def fn():
            result["out"] = loop.run(step, model.initial_state(x, depth), halting,
                                     training=False, generator=generator)
            synchronize(device)
        return fn, result

    train_fns = {"plain": plain_train, **{m: mechanism_train(m) for m in loop.METHODS}}
    eval_fns = {m: evaluation(m) for m in loop.METHODS}
    for fn in train_fns.values():            # warm up
        fn()
    for fn, _ in eval_fns.values():
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

    for fn in bare_fns.values():
        fn()
    train_times = {name: [] for name in train_fns}
    eval_times = {name: [] for name in eval_fns}
    bare_times = {name: [] for name in bare_fns}
    for _ in range(repeats):                 # interleave variants so noise hits all alike
        for name, fn in train_fns.items():
            train_times[name] += _seconds(fn, 1)
        for name, (fn, _) in eval_fns.items():
            eval_times[name] += _seconds(fn, 1)
            bare_times[name] += _seconds(bare_fns[name], 1)

    plain = statistics.median(train_times["plain"])
    training_rows = [{"mechanism": name, "ms_per_update": 1000 * statistics.median(times),
                      "ratio_to_plain": statistics.median(times) / plain}
                     for name, times in train_times.items()]
    full = statistics.median(eval_times["fixed"])
    eval_rows = []
    for name, (_, result) in eval_fns.items():
        seconds = statistics.median(eval_times[name])
        mean_steps = result["out"].steps.float().mean().item()
        ideal = max_steps / mean_steps
        realised = full / seconds
        achievable = full / statistics.median(bare_times[name])
        eval_rows.append({"mechanism": name, "ms_per_batch": 1000 * seconds, "mean_steps": mean_steps,
                          "ideal_speedup": ideal, "achievable_speedup": achievable,
                          "realised_speedup": realised, "fraction_of_ideal": realised / ideal,
                          "fraction_of_achievable": realised / achievable})
    return {"parameters": {"width": width, "batch": batch, "max_steps": max_steps, "repeats": repeats, "bf16": use_bf16,
                           "device": device, "seed": seed, "threads": torch.get_num_threads()},
            "training": training_rows, "evaluation": eval_rows}


def markdown(result: dict) -> str:
    """The two tables as Markdown."""
    lines = ["| mechanism | ms per training update | ratio to plain loop |", "|---|---:|---:|"]
    lines += [f"| {r['mechanism']} | {r['ms_per_update']:.1f} | {r['ratio_to_plain']:.3f} |"
              for r in result["training"]]
    lines += ["", "| mechanism | ms per batch | mean steps | ideal speed-up (L / mean steps) | "
              "achievable (bare steps) | realised | fraction of ideal | fraction of achievable |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['mechanism']} | {r['ms_per_batch']:.1f} | {r['mean_steps']:.2f} | "
              f"{r['ideal_speedup']:.2f} | {r['achievable_speedup']:.2f} | {r['realised_speedup']:.2f} | "
              f"{r['fraction_of_ideal']:.2f} | {r['fraction_of_achievable']:.2f} |"
              for r in result["evaluation"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--max-steps", type=int, default=8, help="L, the steps of every run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast of the step (CUDA only)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="width 256, batch 128, 3 repeats")
    parser.add_argument("--json", default="build/benchmark.json", help="where to write the JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.width, args.batch, args.repeats = 256, 128, 3
    result = measure(args.width, args.batch, args.max_steps, args.repeats, args.device, args.seed, args.bf16)
    write_report(result, args.json, markdown(result))


if __name__ == "__main__":
    main()
