"""Benchmark: MAC's training throughput with and without DACT, and what early exit saves.

Issue 3's GPU measurement, at CLEVR's full shape on synthetic inputs (random
1024 x 14 x 14 features and random questions; what is timed does not depend on their
values): width 512, embeddings 300, batches of 64, L = 12 steps.

An untrained MAC decides nothing worth timing, so its halting logit is overridden
(``halting_at_depth``): question i says "halt" from a depth d_i on, drawn uniformly from
1..L as in ``adaptive.benchmark``, while every step is a real MAC step.

1. Training: questions per second of one optimiser update (forward through
   ``adaptive.loop.run``, backward, gradient clipping, Adam) for the plain MAC (``fixed``:
   all L steps, loss on the last answer), MAC+ACT and MAC+DACT, each as a ratio to the
   plain MAC, and the projected time of one epoch of CLEVR's 699,989 training questions.
   DACT trains through all L steps (its answer mixes them all), so its ratio is the
   mechanism's overhead; the target is under 10 %. ACT's training loop stops once every
   question of the batch has halted, so its time depends on the depths (the table gives
   the steps each variant ran).
2. Evaluation with per-question early exit against the 12-step MAC. DACT stops a
   question only when its bound proves the answer settled, so the steps it takes are
   measured, not assumed. The realised speed-up is compared with the ideal, L / mean
   steps, and with the ideal that remembers the input unit (question encoder and stem,
   run once per question whatever the steps): (t_in + L t_step) / (t_in + mean steps
   t_step), with t_in timed alone and t_step = (t_12 steps - t_in) / L.

Variants alternate within each repeat, so machine noise hits them alike; each time is a
median over repeats. On a GPU::

    python -m adaptive.clevr.benchmark --device cuda --bf16        # the full shape
    python -m adaptive.clevr.benchmark --quick                      # a small CPU version
"""
from __future__ import annotations

import argparse
import statistics

import torch
from torch import nn

from .. import _checks, loop
from ..infra.benchmarking import allocator, halt_from_depth, steady_allocator, timed, write_report
from ..numerics import flush_denormals
from .mac import MAC

CLEVR_TRAIN_QUESTIONS = 699_989
PAPER_VARIANTS = ("fixed", "act", "dact")      # the DACT paper's comparison: MAC, MAC+ACT, MAC+DACT


def synthetic_batch(batch: int, feature_shape: tuple[int, int, int], vocab_size: int, num_answers: int,
                    question_length: int, generator: torch.Generator, device: torch.device):
    """Random questions of 1/2..1 times ``question_length`` words, features and answers."""
    lengths = torch.randint(max(1, question_length // 2), question_length + 1, (batch,), generator=generator)
    tokens = torch.randint(1, vocab_size, (batch, question_length), generator=generator)
    tokens[torch.arange(question_length)[None, :] >= lengths[:, None]] = 0              # padding
    features = torch.randn(batch, *feature_shape, generator=generator)
    answers = torch.randint(0, num_answers, (batch,), generator=generator)
    return tokens.to(device), lengths.to(device), features.to(device), answers.to(device)


def halting_at_depth(mac: MAC):
    """``mac.step`` whose halting logit says "halt" from step ``state["depth"]`` on."""
    def step(state):
        logits, halt_logit, new_state = mac.step(state)
        switch = halt_from_depth(new_state["step"], state["depth"]).to(halt_logit.dtype)   # (b,)
        return logits, switch + 0.0 * halt_logit, new_state
    return step


@flush_denormals()
def measure(width: int = 512, batch: int = 64, max_steps: int = 12, feature_shape=(1024, 14, 14),
            embed_dim: int = 300, vocab_size: int = 90, num_answers: int = 28, question_length: int = 40,
            tau: float = 1e-3, repeats: int = 5, device: str = "cpu", bf16: bool = False, seed: int = 0,
            methods: tuple[str, ...] = PAPER_VARIANTS) -> dict:
    """Both measurements; a dict with the parameters and the two tables."""
    for method in methods:
        _checks.choice("methods", method, loop.METHODS)
    if "fixed" not in methods or "dact" not in methods:
        raise ValueError(f"methods must include 'fixed' (the reference) and 'dact' (early exit), got {methods!r}")
    for name, value in (("width", width), ("batch", batch), ("max_steps", max_steps), ("embed_dim", embed_dim),
                        ("vocab_size", vocab_size), ("num_answers", num_answers),
                        ("question_length", question_length), ("repeats", repeats)):
        _checks.positive_int(name, value)
    if len(feature_shape) != 3 or not all(isinstance(n, int) and n > 0 for n in feature_shape):
        raise ValueError(f"feature_shape must be three positive integers (C, H, W), got {feature_shape!r}")
    if vocab_size < 2:
        raise ValueError(f"vocab_size must be >= 2 (index 0 is padding), got {vocab_size}")
    device = _checks.device(device)
    use_bf16 = bf16 and device.type == "cuda"
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    mac = MAC(vocab_size, num_answers, feature_shape[0], width=width, max_steps=max_steps,
              embed_dim=embed_dim).to(device)
    optimizer = torch.optim.Adam(mac.parameters(), lr=1e-4)
    tokens, lengths, features, answers = synthetic_batch(batch, feature_shape, vocab_size, num_answers,
                                                            question_length, generator, device)
    depth = torch.randint(1, max_steps + 1, (batch,), generator=generator).to(device)

    step = loop.bfloat16_step(halting_at_depth(mac), use_bf16)

    def start():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
            return {**mac.initial_state(tokens, lengths, features), "depth": depth}

    def training(method):
        halting = loop.Halting(method, max_steps, tau=tau)
        ran = {}

        def fn():
            out = loop.run(step, start(), halting, target=answers)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            nn.utils.clip_grad_norm_(mac.parameters(), 8.0)
            optimizer.step()
            ran["steps"] = out.logits.shape[1]                                        # L' steps run
        return fn, ran

    def evaluation(method):
        halting = loop.Halting(method, max_steps, tau=tau)
        taken = {}

        @torch.no_grad()
        def fn():
            taken["steps"] = loop.run(step, start(), halting, training=False).steps
        return fn, taken

    @torch.no_grad()
    def input_unit():
        start()

    train_fns = {method: training(method) for method in methods}
    eval_fns = {method: evaluation(method) for method in ("fixed", "dact")}
    mac.train()
    for fn, _ in train_fns.values():                      # warm-up (and cuDNN's choices)
        fn()
    mac.eval()
    for fn, _ in eval_fns.values():
        fn()
    input_unit()
    train_times = {name: [] for name in train_fns}
    eval_times = {name: [] for name in eval_fns}
    input_times = []
    for _ in range(repeats):
        mac.train()
        for name, (fn, _) in train_fns.items():
            train_times[name].append(timed(fn, device))
        mac.eval()
        for name, (fn, _) in eval_fns.items():
            eval_times[name].append(timed(fn, device))
        input_times.append(timed(input_unit, device))

    plain = statistics.median(train_times["fixed"])
    training_rows = []
    for name, times in train_times.items():
        seconds = statistics.median(times)
        training_rows.append({"variant": "MAC" if name == "fixed" else f"MAC+{name.upper()}",
                              "method": name, "steps_run": train_fns[name][1]["steps"],
                              "ms_per_batch": 1000 * seconds,
                              "questions_per_s": batch / seconds, "ratio_to_plain": seconds / plain,
                              "epoch_hours": CLEVR_TRAIN_QUESTIONS / (batch / seconds) / 3600})
    full = statistics.median(eval_times["fixed"])
    input_seconds = min(statistics.median(input_times), full)
    step_seconds = (full - input_seconds) / max_steps
    eval_rows = []
    for name, (_, taken) in eval_fns.items():
        seconds = statistics.median(eval_times[name])
        mean_steps = taken["steps"].float().mean().item()
        with_input = full / (input_seconds + mean_steps * step_seconds) if full > 0 else 1.0
        eval_rows.append({"variant": f"MAC {max_steps} steps" if name == "fixed" else "MAC+DACT, early exit",
                          "method": name, "ms_per_batch": 1000 * seconds, "questions_per_s": batch / seconds,
                          "mean_steps": mean_steps, "input_unit_share": input_seconds / full,
                          "ideal_speedup": max_steps / mean_steps, "ideal_with_input_unit": with_input,
                          "realised_speedup": full / seconds,
                          "fraction_of_ideal": (full / seconds) / (max_steps / mean_steps),
                          "fraction_of_ideal_with_input_unit": (full / seconds) / with_input})
    return {"parameters": {"width": width, "batch": batch, "max_steps": max_steps, "feature_shape": list(feature_shape),
                           "embed_dim": embed_dim, "vocab_size": vocab_size, "num_answers": num_answers,
                           "question_length": question_length, "tau": tau, "repeats": repeats,
                           "device": str(device), "bf16": use_bf16, "seed": seed,
                           "threads": torch.get_num_threads(), "allocator": allocator(),
                           "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"},
            "training": training_rows, "evaluation": eval_rows}


def markdown(result: dict) -> str:
    """The two tables as Markdown."""
    lines = ["| variant | steps run | ms per batch | questions/s | ratio to MAC | one CLEVR epoch (h) |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['variant']} | {r['steps_run']} | {r['ms_per_batch']:.1f} | {r['questions_per_s']:.0f} | "
              f"{r['ratio_to_plain']:.3f} | {r['epoch_hours']:.2f} |" for r in result["training"]]
    lines += ["", "| evaluation | ms per batch | questions/s | mean steps | ideal speed-up (L / mean steps) | "
              "ideal with the input unit | realised | realised / ideal with the input unit |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['variant']} | {r['ms_per_batch']:.1f} | {r['questions_per_s']:.0f} | {r['mean_steps']:.2f} | "
              f"{r['ideal_speedup']:.2f} | {r['ideal_with_input_unit']:.2f} | {r['realised_speedup']:.2f} | "
              f"{r['fraction_of_ideal_with_input_unit']:.2f} |" for r in result["evaluation"]]
    share = result["evaluation"][0]["input_unit_share"]
    lines += ["", f"The input unit (question encoder and stem) took {share:.0%} of the "
                  f"{result['parameters']['max_steps']}-step evaluation."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m adaptive.clevr.benchmark",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--max-steps", type=int, default=12, help="L, the MAC steps")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CUDA only)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="width 64, features 64x8x8, embeddings 32, batch 32, 3 repeats")
    parser.add_argument("--methods", nargs="*", default=list(PAPER_VARIANTS), choices=loop.METHODS,
                        help="the variants whose training is timed (fixed and dact are needed)")
    parser.add_argument("--json", default="build/clevr_benchmark.json", help="where to write the JSON")
    args = parser.parse_args(argv)
    sizes = {"feature_shape": (1024, 14, 14), "embed_dim": 300}
    if args.quick:
        args.width, args.batch, args.repeats = 64, 32, 3
        sizes = {"feature_shape": (64, 8, 8), "embed_dim": 32}
    result = measure(width=args.width, batch=args.batch, max_steps=args.max_steps, repeats=args.repeats,
                     device=args.device, bf16=args.bf16, seed=args.seed, methods=tuple(args.methods), **sizes)
    write_report(result, args.json, markdown(result))


if __name__ == "__main__":
    steady_allocator("adaptive.clevr.benchmark")              # timings of the computation, not of page faults
    main()
