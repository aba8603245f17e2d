"""One loop that makes any step function adaptive, under any halting mechanism.

A *step function* advances every sample by one step of computation::

    logits, halt_logit, state = step(state)
    # logits:     (b, C)  the step's answer (class logits)
    # halt_logit: (b,)    the step's halting value as a logit: larger means "stop sooner"
    # state:      a tensor, or a tuple / list / dict of tensors, batch first

The state must hold every per-sample tensor the step needs (its input
included), so that the loop can drop halted samples by indexing the state.

The loop names no mechanism. ``Halting.method`` picks a rule from ``RULES`` (``fixed``,
defined here, then the mechanisms of ``adaptive.registry``), and the rule says how h comes
from the halting logit, how training mixes the step answers and what it penalises, and when
evaluation halts a sample (``adaptive.rule``). Each mechanism reads the halting logit in its
paper's convention: ACT, PACT and PonderNet use ``h = sigmoid(halt_logit)`` as the
probability of halting; DACT uses ``h = 1 - sigmoid(halt_logit)``, the probability of
*continuing* (eq. 1 multiplies these; the authors' code uses the same sign).

``run(step, state, halting, target=..., training=True)`` computes what each paper
trains with (all steps, except ACT which stops once every sample has halted)
and returns the loss. ``training=False`` evaluates with per-sample halting --
ACT when the sum of scores reaches 1 - eps, DACT by the bound of eq. 9, PACT
thresholded or discrete, PonderNet by a Bernoulli draw -- and keeps computing
only the samples still running, so a halted sample costs nothing more.

Positions of a feature map cannot leave a batch this way (a convolution reads halted
neighbours), so the spatial methods (ACT per ResNet block, SACT, PSACT) run in
``adaptive.spatial.halting.run_block``, which applies the same ``act`` and ``pact`` rules per position.
"""
from __future__ import annotations

import contextlib
import numbers
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from . import _checks, registry
from .rule import EvalStep, HaltingRule, Training

State = Any
Step = Callable[[State], tuple[torch.Tensor, torch.Tensor, State]]


class FixedRule(HaltingRule):
    """The non-adaptive baseline: every sample runs all L steps and answers with the last."""

    name = "fixed"
    penalty_name = None
    uses_every_step = False              # the halting logit is never read

    def train(self, logits, h, halting, generator):
        batch, computed = h.shape
        L = torch.full((batch,), computed, dtype=h.dtype, device=h.device)
        return Training(F.log_softmax(logits[:, -1], dim=-1), ponder=L, penalty=torch.zeros_like(L))

    def halt(self, step, halting):
        return torch.zeros_like(step.h, dtype=torch.bool), lambda mask: F.softmax(step.logits[mask], dim=-1)

    def decide(self, logits, h, halting, generator):
        steps = torch.full(h.shape[:1], h.shape[1], dtype=torch.int64, device=h.device)
        return F.softmax(logits[:, -1], dim=-1), steps


RULES: dict[str, HaltingRule] = {FixedRule.name: FixedRule(), **registry.MECHANISMS}
METHODS = tuple(RULES)
EVAL_MODES = tuple(dict.fromkeys(mode for rule in RULES.values() for mode in rule.eval_modes))
COMPACT_AT = 0.0                     # Halting.compact_at's default (see python -m adaptive.benchmark)
# early_exit="auto" keeps dropping halted samples only while the loop's bookkeeping of a step costs
# less than this share of the step itself, measured on the second step. With adaptive.benchmark's
# residual MLP step (batch 128 at width 256, 512 above, depths uniform in 1..8, 2 CPU threads) the
# bookkeeping cost 0.77 (ACT) and 0.82 (DACT) of the step at width 256, where early exit took 1.15
# times as long as computing every step, and 0.43-0.46 (PACT, PonderNet), where it took 0.90-0.97;
# at width 1024 it cost 0.07-0.09 and early exit 0.53-0.61 of the time, at 2048 0.03 and 0.52-0.63.
BOOKKEEPING_SHARE = 0.5


@dataclass(frozen=True)
class Halting:
    """Which mechanism to run, and its hyper-parameters.

    Attributes:
        method: one of ``METHODS``; ``"fixed"`` always runs ``max_steps`` steps.
        max_steps: L, the most steps any sample may take.
        tau: penalty weight: on ACT's rho (N + R), DACT's rho (eq. 3), PACT's
            expected steps (eq. 23); for PonderNet the KL weight beta
            (``rule.penalty_name`` says which).
        eps: ACT's threshold slack, in (0, 1).
        temperature: PACT's Concrete temperature for relaxed training, > 0.
        eval_mode: how PACT and PonderNet halt at evaluation: ``"thresholded"``
            (h > 0.5), ``"discrete"`` (a Bernoulli draw) or ``"relaxed"``
            (no early exit: every step, relaxed mixture).
        prior: PonderNet's prior halting probability lambda_p, in (0, 1).
        early_exit: at evaluation, drop each sample from the batch once it halts (True), or
            compute every step for the whole batch and apply the rule's decisions afterwards
            (False: the same answers and steps, without the per-step bookkeeping that costs
            more than it saves where a step is cheap; ``python -m adaptive.benchmark`` measures
            both). ``"auto"`` (the default) starts with early exit, times the second step and
            its bookkeeping, and falls back to computing every step where the bookkeeping
            costs more than ``BOOKKEEPING_SHARE`` of the step (``Output.early_exit`` says which
            ran): the answers and steps are the same either way. PACT's and PonderNet's discrete
            draws differ between the two, so in discrete mode "auto" keeps early exit.
        compact_at: with early exit, the share of the computed batch that must have halted
            before the halted samples are dropped from it, in [0, 1): 0 drops them at once;
            until then the step keeps computing their rows, which is cheaper than selecting
            the whole state at every step. Answers, steps and draws do not depend on it.
    """

    method: str
    max_steps: int
    tau: float = 0.0
    eps: float = 0.01
    temperature: float = 1.0
    eval_mode: str = "thresholded"
    prior: float = 0.2
    early_exit: bool | str = "auto"
    compact_at: float = COMPACT_AT

    def __post_init__(self):
        _checks.choice("method", self.method, tuple(RULES))
        if isinstance(self.max_steps, numbers.Integral) and not isinstance(self.max_steps, bool):
            object.__setattr__(self, "max_steps", int(self.max_steps))       # a NumPy integer, say
        _checks.positive_int("max_steps", self.max_steps)
        # numbers of any real type (Python, NumPy, 0-d tensors) are kept as Python floats
        for name, check in (("tau", _checks.non_negative), ("eps", _checks.open_unit),
                            ("temperature", _checks.positive), ("prior", _checks.open_unit)):
            object.__setattr__(self, name, check(name, getattr(self, name)))
        _checks.choice("eval_mode", self.eval_mode, EVAL_MODES)
        compact_at = self.compact_at
        if isinstance(compact_at, bool) or not isinstance(compact_at, numbers.Real) or not 0 <= compact_at < 1:
            raise ValueError(f"compact_at (the share of the batch halted before it is compacted) must be a "
                             f"number in [0, 1), got {compact_at!r}")
        object.__setattr__(self, "compact_at", float(compact_at))
        if not isinstance(self.early_exit, bool) and self.early_exit != "auto":
            raise ValueError(f"early_exit must be True, False or 'auto', got {self.early_exit!r}")

    @property
    def rule(self) -> HaltingRule:
        """The mechanism's rule (``RULES[method]``)."""
        return RULES[self.method]

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Output:
    """What one run of the loop returns.

    Attributes:
        probs: (B, C) predicted class probabilities.
        steps: (B,) int64, steps computed for each sample.
        ponder: (B,) the mechanism's differentiable ponder quantity (ACT and
            DACT: rho; PACT and PonderNet: expected steps; fixed: L); training only.
        loss: scalar, task loss + penalty (None without a target).
        task_loss: scalar task loss (None without a target).
        penalty: scalar penalty term (None without a target).
        logits: (B, L', C) per-step logits (training only; L' steps computed).
        halt: (B, L') per-step h in the mechanism's convention (training only).
        early_exit: at evaluation, whether halted samples left the batch until the end (True),
            or every step was computed for the whole batch, from the start or after the
            fallback of ``Halting(early_exit="auto")`` (False); None in training.
    """

    probs: torch.Tensor
    steps: torch.Tensor
    ponder: torch.Tensor | None = None
    loss: torch.Tensor | None = None
    task_loss: torch.Tensor | None = None
    penalty: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    halt: torch.Tensor | None = None
    early_exit: bool | None = None


def halting_values(halting: Halting, halt_logit: torch.Tensor) -> torch.Tensor:
    """Map the step's halting logit to the mechanism's h (see the module docstring)."""
    return halting.rule.halting_values(halt_logit)


def bfloat16_step(step: Step, enabled: bool = True) -> Step:
    """``step`` run under CUDA's bfloat16 autocast, its logits and halting logit returned in
    float32, so that the halting arithmetic (products of many h) never runs in bfloat16.
    With ``enabled=False``, ``step`` itself."""
    if not enabled:
        return step

    def in_bfloat16(state):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits, halt_logit, state = step(state)
        return logits.float(), halt_logit.float(), state
    return in_bfloat16


def select(state: State, rows: torch.Tensor) -> State:
    """Index every tensor of a (nested) state along its batch dimension."""
    if isinstance(state, torch.Tensor):
        return state[rows]
    if isinstance(state, (tuple, list)):
        return type(state)(select(s, rows) for s in state)
    if isinstance(state, dict):
        return {key: select(value, rows) for key, value in state.items()}
    raise ValueError(f"state must be a tensor or a tuple/list/dict of tensors, got {type(state).__name__}")


def _batch_size(state: State) -> int:
    """B, the batch size of an initial state: every tensor in it must be batch first, with B >= 1 rows."""
    leaves = []

    def collect(part, where):
        if isinstance(part, torch.Tensor):
            leaves.append((where, part))
        elif isinstance(part, (tuple, list)):
            for index, item in enumerate(part):
                collect(item, f"{where}[{index}]")
        elif isinstance(part, dict):
            for key, item in part.items():
                collect(item, f"{where}[{key!r}]")
        else:
            raise ValueError(f"the state must be a tensor or a tuple/list/dict of tensors (the step-function "
                             f"protocol); {where} is a {type(part).__name__}")

    collect(state, "state")
    if not leaves or any(tensor.dim() == 0 for _, tensor in leaves):
        raise ValueError("the state must hold batch-first tensors (the step-function protocol): "
                         + ("it holds none" if not leaves else "a 0-d tensor has no batch dimension"))
    sizes = {where: tensor.shape[0] for where, tensor in leaves}
    batch = next(iter(sizes.values()))
    if any(size != batch for size in sizes.values()):
        raise ValueError(f"every tensor of the state must be batch first with the same batch size; got {sizes}")
    if batch == 0:
        raise ValueError("the batch is empty (B = 0): there is nothing to run")
    return batch


def _check_step(logits, halt_logit, state, batch: int, generator: torch.Generator | None) -> None:
    """The first step's outputs against the step-function protocol (later steps are not checked),
    and the generator against the device of the logits."""
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != batch \
            or not logits.is_floating_point():
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"the step function must return logits of shape (b, C) = ({batch}, C), floating, "
                         f"as its first output; got {got}")
    if not isinstance(halt_logit, torch.Tensor) or tuple(halt_logit.shape) != (batch,) \
            or not halt_logit.is_floating_point():
        got = tuple(halt_logit.shape) if isinstance(halt_logit, torch.Tensor) else type(halt_logit).__name__
        hint = " (squeeze the last dimension of a (b, 1) halting head)" if got == (batch, 1) else ""
        raise ValueError(f"the step function must return one halting logit per sample, shape (b,) = ({batch},), "
                         f"as its second output; got {got}{hint}")
    rows = _batch_size(state)
    if rows != batch:
        raise ValueError(f"the step function must return the next state batch first, with the batch's "
                         f"{batch} rows; got {rows}")
    _checks.generator(generator, logits.device)


def _check_target(target: torch.Tensor, batch: int, classes: int) -> None:
    if not isinstance(target, torch.Tensor) or tuple(target.shape) != (batch,) or target.is_floating_point():
        got = tuple(target.shape) if isinstance(target, torch.Tensor) else type(target).__name__
        raise ValueError(f"target must be (B,) = ({batch},) integer class indices, got {got}")
    if bool(((target < 0) | (target >= classes)).any()):
        raise ValueError(f"target must hold class indices in 0..{classes - 1} (the logits have {classes} "
                         f"classes); got values in [{int(target.min())}, {int(target.max())}]")


def _unroll(step: Step, state: State, halting: Halting, generator: torch.Generator | None,
            computed: tuple[list, list] | None = None):
    """Run up to L steps on the whole batch, or fewer where the rule allows (ACT). ``computed``:
    the logits (B, C) and h (B,) of the steps already run on this batch, to continue after them."""
    rule = halting.rule
    batch = _batch_size(state)
    all_logits, all_h = computed if computed is not None else ([], [])
    first = len(all_h) + 1
    with contextlib.ExitStack() as later_steps:
        for n in range(first, halting.max_steps + 1):
            logits, halt_logit, state = step(state)
            if n == 1:
                _check_step(logits, halt_logit, state, batch, generator)
            elif n == max(first, 2):                   # later steps: same origin, so skip the value checks
                later_steps.enter_context(_checks.values_trusted())
            all_logits.append(logits)
            all_h.append(rule.halting_values(halt_logit))
            if n < halting.max_steps and rule.unrolled_enough(all_h, halting):
                break
    return torch.stack(all_logits, dim=1), torch.stack(all_h, dim=1)   # (B, L', C), (B, L')


def _train(step: Step, state: State, halting: Halting, target: torch.Tensor | None,
           generator: torch.Generator | None) -> Output:
    """What the paper trains with: the rule mixes the unrolled steps and names the penalty."""
    logits, h = _unroll(step, state, halting, generator)                    # (B, L', C), (B, L')
    mixed = halting.rule.train(logits, h, halting, generator)
    steps = mixed.steps
    if steps is None:                                                       # every step computed
        steps = torch.full((h.shape[0],), h.shape[1], dtype=torch.int64, device=h.device)
    out = Output(probs=mixed.log_probs.exp(), steps=steps, ponder=mixed.ponder, logits=logits, halt=h)
    if target is not None:
        batch, _, classes = logits.shape
        _check_target(target, batch, classes)
        out.loss, out.task_loss, out.penalty = halting.rule.loss(logits, mixed, target, halting.tau)
    return out


@torch.no_grad()
def _evaluate(step: Step, state: State, halting: Halting, generator: torch.Generator | None) -> Output:
    """Per-sample early exit: each sample halts by its rule, and the halted samples leave the
    computed batch once ``halting.compact_at`` of it has halted.

    Until then the step still computes the halted rows (their results are dropped): selecting
    every tensor of the state costs more than a few rows of a step. The rule sees only the
    running samples, exactly as if the halted ones had left at once, so its answers and its
    random draws do not depend on ``compact_at``.

    With ``early_exit="auto"`` the second step and the bookkeeping after it are timed; where
    the bookkeeping costs more than ``BOOKKEEPING_SHARE`` of the step, the samples still running
    compute every remaining step and the rule decides on all of them at once (``rule.decide``),
    as ``early_exit=False`` does: the same answers and steps, without the per-step bookkeeping.
    """
    rule, L = halting.rule, halting.max_steps
    draws = halting.eval_mode == "discrete" and "discrete" in rule.eval_modes
    auto = halting.early_exit == "auto" and not draws and rule.decides and L > 2
    keeps_history = rule.keeps_history(halting)        # "auto" keeps it for its first two steps too
    batch = _batch_size(state)
    # computed: (c,) batch indices of the rows the state holds; running: (b,) those not halted,
    # live: (b,) their positions among the computed rows (None while all of them run)
    computed = running = live = probs = steps = memory = history = None
    fell_back = False
    with contextlib.ExitStack() as later_steps:
        for n in range(1, L + 1):
            started = time.perf_counter()
            logits, halt_logit, state = step(state)                         # (c, C), (c,)
            if auto and n == 2:
                _synchronize(logits)
                stepped = time.perf_counter()
            h = rule.halting_values(halt_logit)                             # (c,)
            if n == 1:                                 # the protocol, and every value the rule reads, once
                _check_step(logits, halt_logit, state, batch, generator)
                batch, classes = logits.shape
                computed = running = torch.arange(batch, device=logits.device)
                probs = logits.new_zeros(batch, classes)
                steps = torch.full((batch,), L, dtype=torch.int64, device=logits.device)
                memory = rule.evaluation_memory(batch, classes, logits)
                if keeps_history or auto:
                    history = (logits.new_zeros(batch, L, classes), logits.new_zeros(batch, L))  # (B, L, C), (B, L)
            elif n == 2:                               # later steps: same origin, so skip the value checks
                later_steps.enter_context(_checks.values_trusted())
            if live is not None:
                logits, h = logits[live], h[live]                           # (b, C), (b,)
            if keeps_history or (auto and n <= 2):
                history[0][running, n - 1] = logits
                history[1][running, n - 1] = h
            past = history if keeps_history else None
            halted, answer = rule.halt(EvalStep(n, logits, h, running, memory, past, generator), halting)
            if n == L:
                halted = torch.ones_like(halted)
            halting_now = int(halted.sum())            # one device sync per step
            if halting_now:
                done = running[halted]
                probs[done] = answer(halted)
                steps[done] = n
                if halting_now == len(running):
                    break
                keep = ~halted
                running = running[keep]
                live = keep.nonzero().squeeze(1) if live is None else live[keep]
                if len(running) <= (1 - halting.compact_at) * len(computed):
                    computed, state, live = running, select(state, live), None
            if auto and n == 2 and time.perf_counter() - stepped > BOOKKEEPING_SHARE * (stepped - started):
                state = state if live is None else select(state, live)      # the running rows, in order
                so_far = (list(history[0][running, :n].unbind(1)), list(history[1][running, :n].unbind(1)))
                probs[running], steps[running] = rule.decide(*_unroll(step, state, halting, generator, so_far),
                                                             halting, generator)
                fell_back = True
                break
    if bool(torch.isnan(probs).any()):
        raise FloatingPointError("evaluation gave NaN class probabilities: the step function returned NaN "
                                 "logits (or halting logits) for some samples")
    return Output(probs=probs, steps=steps, early_exit=not fell_back)


def _synchronize(like: torch.Tensor) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously), so that a timing is the work's."""
    if like.is_cuda:
        torch.cuda.synchronize(like.device)


@torch.no_grad()
def _evaluate_unrolled(step: Step, state: State, halting: Halting, generator: torch.Generator | None) -> Output:
    """Evaluation without early exit: every step on the whole batch, then the rule's decisions."""
    logits, h = _unroll(step, state, halting, generator)                    # (B, L', C), (B, L')
    probs, steps = halting.rule.decide(logits, h, halting, generator)
    if bool(torch.isnan(probs).any()):
        raise FloatingPointError("evaluation gave NaN class probabilities: the step function returned NaN "
                                 "logits (or halting logits) for some samples")
    return Output(probs=probs, steps=steps, early_exit=False)


def run(step: Step, state: State, halting: Halting, *, target: torch.Tensor | None = None,
        training: bool = True, generator: torch.Generator | None = None) -> Output:
    """Run ``step`` adaptively under ``halting``.

    Args:
        step: the step function (see the module docstring).
        state: the initial state, batch first.
        halting: the mechanism and its settings.
        target: (B,) class indices; when given, the loss is computed (training).
        training: True runs what the paper trains with; False halts per sample.
        generator: optional ``torch.Generator`` for PACT's and PonderNet's samples.
    Returns:
        ``Output``.
    """
    if not isinstance(halting, Halting):
        raise ValueError(f"halting must be an adaptive.loop.Halting, got {type(halting).__name__}")
    _checks.generator(generator)
    if training:
        return _train(step, state, halting, target, generator)
    if halting.early_exit:
        return _evaluate(step, state, halting, generator)
    return _evaluate_unrolled(step, state, halting, generator)
