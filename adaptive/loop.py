"""One loop that makes any step function adaptive, under any halting mechanism.

A *step function* advances every sample by one step of computation::

    logits, halt_logit, state = step(state)
    # logits:     (b, C)  the step's answer (class logits)
    # halt_logit: (b,)    the step's halting value as a logit: larger means "stop sooner"
    # state:      a tensor, or a tuple / list / dict of tensors, batch first

The state must hold every per-sample tensor the step needs (its input
included), so that the loop can drop halted samples by indexing the state.

Each mechanism reads the halting logit in its paper's convention:
ACT, PACT and PonderNet use ``h = sigmoid(halt_logit)`` as the probability of
halting; DACT uses ``h = 1 - sigmoid(halt_logit)``, the probability of
*continuing* (eq. 1 multiplies these; the authors' code uses the same sign).

``run(step, state, halting, target=..., training=True)`` computes what each paper
trains with (all steps, except ACT which stops once every sample has halted)
and returns the loss. ``training=False`` evaluates with per-sample halting --
ACT when the sum of scores reaches 1 - eps, DACT by the bound of eq. 9, PACT
thresholded or discrete, PonderNet by a Bernoulli draw -- and keeps computing
only the samples still running, so a halted sample costs nothing more.

Positions of a feature map cannot leave a batch this way (a convolution reads halted
neighbours), so the spatial methods (ACT per ResNet block, SACT, PSACT) run in
``adaptive.spatial.run_block``, which applies the same ``act`` and ``pact`` rules per position.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from . import _checks, act, dact, pact, pondernet
from .numerics import safe_log

METHODS = ("fixed", "act", "dact", "pact", "pondernet")
State = Any
Step = Callable[[State], tuple[torch.Tensor, torch.Tensor, State]]


@dataclass(frozen=True)
class Halting:
    """Which mechanism to run, and its hyper-parameters.

    Attributes:
        method: one of ``METHODS``; ``"fixed"`` always runs ``max_steps`` steps.
        max_steps: L, the most steps any sample may take.
        tau: penalty weight: on ACT's rho (N + R), DACT's rho (eq. 3), PACT's
            expected steps (eq. 23); for PonderNet the KL weight beta.
        eps: ACT's threshold slack, in (0, 1).
        temperature: PACT's Concrete temperature for relaxed training, > 0.
        eval_mode: how PACT and PonderNet halt at evaluation: ``"thresholded"``
            (h > 0.5), ``"discrete"`` (a Bernoulli draw) or ``"relaxed"``
            (no early exit: every step, relaxed mixture).
        prior: PonderNet's prior halting probability lambda_p, in (0, 1).
    """

    method: str
    max_steps: int
    tau: float = 0.0
    eps: float = 0.01
    temperature: float = 1.0
    eval_mode: str = "thresholded"
    prior: float = 0.2

    def __post_init__(self):
        _checks.choice("method", self.method, METHODS)
        _checks.positive_int("max_steps", self.max_steps)
        _checks.non_negative("tau", self.tau)
        _checks.open_unit("eps", self.eps)
        _checks.positive("temperature", self.temperature)
        _checks.choice("eval_mode", self.eval_mode, pact.MODES)
        _checks.open_unit("prior", self.prior)

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
    """

    probs: torch.Tensor
    steps: torch.Tensor
    ponder: torch.Tensor | None = None
    loss: torch.Tensor | None = None
    task_loss: torch.Tensor | None = None
    penalty: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    halt: torch.Tensor | None = None


def halting_values(halting: Halting, halt_logit: torch.Tensor) -> torch.Tensor:
    """Map the step's halting logit to the mechanism's h (see the module docstring)."""
    if halting.method == "dact":
        return torch.sigmoid(-halt_logit)
    return torch.sigmoid(halt_logit)


def select(state: State, rows: torch.Tensor) -> State:
    """Index every tensor of a (nested) state along its batch dimension."""
    if isinstance(state, torch.Tensor):
        return state[rows]
    if isinstance(state, (tuple, list)):
        return type(state)(select(s, rows) for s in state)
    if isinstance(state, dict):
        return {key: select(value, rows) for key, value in state.items()}
    raise ValueError(f"state must be a tensor or a tuple/list/dict of tensors, got {type(state).__name__}")


def _unroll(step: Step, state: State, halting: Halting):
    """Run up to L steps on the whole batch; ACT stops once every sample has halted."""
    all_logits, all_h = [], []
    for n in range(1, halting.max_steps + 1):
        logits, halt_logit, state = step(state)
        all_logits.append(logits)
        all_h.append(halting_values(halting, halt_logit))
        if halting.method == "act" and n < halting.max_steps:
            if act.reached_threshold(torch.stack(all_h, dim=1), halting.eps)[:, -1].all():
                break
    return torch.stack(all_logits, dim=1), torch.stack(all_h, dim=1)   # (B, L', C), (B, L')


def _mix(weights: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """sum_n w_n logits_n: (B, L), (B, L, C) -> (B, C)."""
    return (weights.unsqueeze(-1) * logits).sum(dim=1)


def _train(step: Step, state: State, halting: Halting, target: torch.Tensor | None,
           generator: torch.Generator | None) -> Output:
    logits, h = _unroll(step, state, halting)                               # (B, L', C), (B, L')
    batch, computed = h.shape
    full = torch.full((batch,), computed, dtype=torch.int64, device=h.device)
    method = halting.method
    if method == "fixed":
        log_probs = F.log_softmax(logits[:, -1], dim=-1)
        ponder, steps = full.to(h.dtype), full
        penalty_per_sample = torch.zeros_like(ponder)
    elif method == "act":
        weights, ponder, steps = act.halting_distribution(h, halting.eps)
        log_probs = F.log_softmax(_mix(weights, logits), dim=-1)
        penalty_per_sample = ponder
    elif method == "dact":
        answers = dact.accumulate(F.softmax(logits, dim=-1), h)[:, -1]       # (B, C), a_L
        log_probs = safe_log(answers)
        ponder, steps = dact.ponder_cost(h), full
        penalty_per_sample = ponder
    elif method == "pact":
        z = pact.halting_distribution(h, "relaxed", halting.temperature, generator)
        log_probs = F.log_softmax(_mix(z, logits), dim=-1)                   # eq. 18
        ponder, steps = pact.expected_steps(h), full
        penalty_per_sample = ponder
    else:  # pondernet
        p = pondernet.halting_distribution(h)                               # (B, L)
        mixture = (p.unsqueeze(-1) * F.softmax(logits, dim=-1)).sum(dim=1)
        log_probs = safe_log(mixture)
        ponder, steps = pact.expected_steps(h), full                          # same q(z) as PACT
        penalty_per_sample = pondernet.kl_to_prior(p, halting.prior)
    out = Output(probs=log_probs.exp(), steps=steps, ponder=ponder, logits=logits, halt=h)
    if target is not None:
        if method == "pondernet":
            step_losses = F.cross_entropy(
                logits.transpose(1, 2), target.unsqueeze(1).expand(-1, computed), reduction="none")
            out.task_loss = pondernet.reconstruction_loss(step_losses, p).mean()
        else:
            out.task_loss = F.nll_loss(log_probs, target)
        out.penalty = halting.tau * penalty_per_sample.mean()
        out.loss = out.task_loss + out.penalty
    return out


class _Memory:
    """What evaluation keeps of each sample's past steps; rows are sample indices.

    ACT and relaxed PACT need the whole prefix of logits and h; DACT only its
    running answer a_n and probability p_n (eq. 2 continues from them); the
    others need nothing.
    """

    def __init__(self, halting: Halting, batch: int, classes: int, like: torch.Tensor):
        L = halting.max_steps
        self.prefix = halting.method == "act" or (
            halting.method in ("pact", "pondernet") and halting.eval_mode == "relaxed")
        if self.prefix:
            self.logits = like.new_zeros(batch, L, classes)                  # (B, L, C)
            self.h = like.new_zeros(batch, L)                                # (B, L)
        if halting.method == "dact":
            self.answer = like.new_zeros(batch, classes)                     # a_0 = 0
            self.p = like.new_ones(batch)                                    # p_0 = 1


def _halt_now(halting: Halting, memory: _Memory, rows: torch.Tensor, n: int, logits: torch.Tensor,
              h: torch.Tensor, generator: torch.Generator | None):
    """Which of the running samples ``rows`` halt after step n, and their answers.

    Args:
        logits: (b, C) this step's logits; h: (b,) this step's h.
    Returns:
        (b,) bool halted; a function giving the (k, C) class probabilities of
        the rows selected by a (b,) mask (only halted rows are ever asked for).
    """
    method, last = halting.method, n == halting.max_steps
    if memory.prefix:
        memory.logits[rows, n - 1] = logits
        memory.h[rows, n - 1] = h
    if method == "act":
        halted = act.reached_threshold(memory.h[rows, :n], halting.eps)[:, -1]

        def answer(mask):
            weights, _, _ = act.halting_distribution(memory.h[rows[mask], :n], halting.eps)
            return F.softmax(_mix(weights, memory.logits[rows[mask], :n]), dim=-1)
    elif method == "dact":
        start = (memory.answer[rows], memory.p[rows])
        a_n = dact.accumulate(F.softmax(logits, dim=-1).unsqueeze(1), h.unsqueeze(1), start)[:, -1]
        p_n = dact.halting_probabilities(h.unsqueeze(1), memory.p[rows])[:, -1]
        memory.answer[rows], memory.p[rows] = a_n, p_n
        halted = dact.can_halt(a_n, p_n, halting.max_steps - n)

        def answer(mask):
            return a_n[mask]
    elif memory.prefix:                      # relaxed PACT / PonderNet: every step, no early exit
        halted = torch.zeros_like(h, dtype=torch.bool)

        def answer(mask):
            z = pact.halting_distribution(memory.h[rows[mask]], "relaxed", halting.temperature, generator)
            return F.softmax(_mix(z, memory.logits[rows[mask]]), dim=-1)
    else:                                    # fixed; PACT / PonderNet thresholded or discrete
        if method == "fixed":
            halted = torch.zeros_like(h, dtype=torch.bool)
        else:
            halted = pact.sample_halt(h, halting.eval_mode, generator=generator).bool()

        def answer(mask):
            return F.softmax(logits[mask], dim=-1)
    if last:
        halted = torch.ones_like(halted)
    return halted, answer


@torch.no_grad()
def _evaluate(step: Step, state: State, halting: Halting, generator: torch.Generator | None) -> Output:
    L = halting.max_steps
    rows = memory = probs = steps = None     # rows: (b,) indices of the samples still computing
    for n in range(1, L + 1):
        logits, halt_logit, state = step(state)
        if rows is None:
            batch, classes = logits.shape
            rows = torch.arange(batch, device=logits.device)
            memory = _Memory(halting, batch, classes, logits)
            probs = logits.new_zeros(batch, classes)
            steps = torch.full((batch,), L, dtype=torch.int64, device=logits.device)
        halted, answer = _halt_now(halting, memory, rows, n, logits,
                                   halting_values(halting, halt_logit), generator)
        if halted.any():
            probs[rows[halted]] = answer(halted)
            steps[rows[halted]] = n
            if halted.all():
                break
            keep = ~halted
            rows, state = rows[keep], select(state, keep)
    return Output(probs=probs, steps=steps)


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
    if training:
        return _train(step, state, halting, target, generator)
    return _evaluate(step, state, halting, generator)
