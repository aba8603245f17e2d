"""Differentiable Adaptive Computation Time (Eyzaguirre & Soto, CVPR 2020).

A run of L steps produces per-step answers ``y_n`` (class probabilities) and
per-step halting values ``h_n`` in [0, 1] ("how uncertain step n is"). DACT
keeps a running answer ``a_n`` that later steps may change less and less:

* eq. 1  ``p_n = prod_{i<=n} h_i``, with ``p_0 = 1``;
* eq. 2  ``a_n = y_n p_{n-1} + a_{n-1} (1 - p_{n-1})``, with ``a_0 = 0``;
* eq. 3  ponder cost ``rho = sum_n p_n``;
* eq. 9  halting condition: with d steps left, the top class of ``a_n`` cannot
  be overtaken once ``P(c*, n) (1 - p_n)^d >= P(c_ru, n) + p_n d``.

Everything is differentiable; training always runs all L steps, and only
evaluation halts, by eq. 9, with the same top-1 answer as running all L steps.
``DactRule`` is how ``adaptive.loop`` runs DACT.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import _checks
from .numerics import safe_log
from .rule import HaltingRule, Training, at, first


def halting_probabilities(h: torch.Tensor, p_start: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 1: ``p_n = prod_{i<=n} h_i``, the chance that a later step still changes the answer.

    Args:
        h: (B, L) halting values in [0, 1].
        p_start: optional (B,) p after the steps before these (to continue a
            run step by step); default ``p_0 = 1``.
    Returns:
        (B, L) p_n, non-increasing in n.
    """
    _checks.as_steps("h", h, dims=2)
    _checks.probabilities("h", h)
    if p_start is not None and (not isinstance(p_start, torch.Tensor) or p_start.shape != h.shape[:1]):
        shape = tuple(p_start.shape) if isinstance(p_start, torch.Tensor) else type(p_start).__name__
        raise ValueError(f"p_start must have shape (B,) = {tuple(h.shape[:1])}, got {shape}")
    p = torch.cumprod(h, dim=1)
    return p if p_start is None else p_start.unsqueeze(1) * p


def _previous_p(h: torch.Tensor, p_start: torch.Tensor | None) -> torch.Tensor:
    """``p_{n-1}`` for each of the L steps, starting from ``p_start`` (default p_0 = 1); (B, L)."""
    p = halting_probabilities(h, p_start)                                   # (B, L)
    first = torch.ones_like(p[:, :1]) if p_start is None else p_start.unsqueeze(1)
    return torch.cat([first, p[:, :-1]], dim=1)


def accumulate(y: torch.Tensor, h: torch.Tensor, start: tuple | None = None) -> torch.Tensor:
    """Eq. 2: the accumulated answer ``a_n`` after every step n.

    Args:
        y: (B, L, C) per-step answers, probabilities in [0, 1].
        h: (B, L) halting values in [0, 1].
        start: optional ``(a, p)``, the accumulated answer (B, C) and halting
            probability (B,) after the steps before these, to continue a run
            step by step (as early-exit evaluation does); default ``a_0 = 0``,
            ``p_0 = 1``.
    Returns:
        (B, L, C): ``a[:, n-1]`` is a_n; ``a[:, -1]`` is the model's answer Y.
    """
    _checks.as_steps("y", y, dims=3)
    _checks.probabilities("y", y)
    _checks.as_steps("h", h, dims=2)
    _checks.same_leading_shape("y", y, "h", h, dims=2)
    if start is not None:
        a, p = start
        if not isinstance(a, torch.Tensor) or a.shape != (y.shape[0], y.shape[2]):
            raise ValueError(f"start's answer must have shape (B, C) = {(y.shape[0], y.shape[2])}, "
                             f"got {tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__}")
    a, p_start = (torch.zeros_like(y[:, 0]), None) if start is None else start   # (B, C), a_0 = 0
    p_prev = _previous_p(h, p_start).unsqueeze(-1)                          # (B, L, 1)
    answers = []
    for n in range(y.shape[1]):
        a = y[:, n] * p_prev[:, n] + a * (1 - p_prev[:, n])                 # (B, C)
        answers.append(a)
    return torch.stack(answers, dim=1)                                      # (B, L, C)


def step_weights(h: torch.Tensor) -> torch.Tensor:
    """The weight of each step's answer in the final one: ``a_L = sum_n w_n y_n``.

    Unrolling eq. 2 gives ``w_n = p_{n-1} prod_{k=n}^{L-1} (1 - p_k)``; the
    weights are non-negative and sum to 1 (the supplementary material's proof),
    so DACT's answer is a mixture of the per-step answers.

    Args:
        h: (B, L) halting values in [0, 1].
    Returns:
        (B, L) weights summing to 1 along the steps.
    """
    p_prev = _previous_p(h, None)                                           # (B, L) p_{n-1}
    keep = 1 - p_prev                                                       # (B, L) 1 - p_{n-1}
    # prod_{k=n}^{L-1} (1 - p_k) = prod over later positions of keep, i.e. a reversed
    # exclusive cumulative product of keep[:, 1:].
    later = torch.cat([keep[:, 1:], torch.ones_like(keep[:, :1])], dim=1)   # (B, L) 1 - p_n, then 1
    survive = torch.flip(torch.cumprod(torch.flip(later, [1]), dim=1), [1])  # (B, L)
    return p_prev * survive


def ponder_cost(h: torch.Tensor) -> torch.Tensor:
    """Eq. 3: ``rho = sum_n p_n``, the differentiable proxy for the steps used.

    Args:
        h: (B, L) halting values in [0, 1].
    Returns:
        (B,) ponder cost. (The authors' code adds a constant 1; constants do not
        change the gradient, so we keep the paper's form.)
    """
    return halting_probabilities(h).sum(dim=1)


def can_halt(a_n: torch.Tensor, p_n: torch.Tensor, remaining) -> torch.Tensor:
    """Eq. 9: whether no continuation of ``remaining`` steps can change the top class.

    ``P(c*, n) (1 - p_n)^d >= P(c_ru, n) + p_n d``, with c* the top class of
    ``a_n``, c_ru the runner-up and d the steps left. Derived in eqs. 5-8: the
    top class can at worst shrink by ``(1 - p_n)`` per step, the runner-up can
    at best gain ``p_n`` per step. With ``d = 0`` it always holds.

    Args:
        a_n: (B, C) accumulated answer after step n, probabilities, C >= 2.
        p_n: (B,) halting probability after step n (eq. 1).
        remaining: int or (B,) tensor, steps left d = L - n, >= 0.
    Returns:
        (B,) bool, True where halting cannot change the predicted class.
    """
    if not isinstance(a_n, torch.Tensor) or a_n.dim() != 2 or a_n.shape[1] < 2:
        shape = tuple(a_n.shape) if isinstance(a_n, torch.Tensor) else type(a_n).__name__
        raise ValueError(f"a_n must have shape (B, C) with C >= 2 classes, got {shape}")
    _checks.probabilities("a_n", a_n)
    if not isinstance(p_n, torch.Tensor) or p_n.shape != a_n.shape[:1]:
        shape = tuple(p_n.shape) if isinstance(p_n, torch.Tensor) else type(p_n).__name__
        raise ValueError(f"p_n must have shape (B,) = {tuple(a_n.shape[:1])}, got {shape}")
    _checks.probabilities("p_n", p_n)
    if isinstance(remaining, int) and not isinstance(remaining, bool) and remaining >= 0:
        d = remaining                                                       # the common case, no tensor ops
    else:
        d = torch.as_tensor(remaining, dtype=a_n.dtype, device=a_n.device)
        if (d.dim() > 1 or (d.dim() == 1 and d.shape != p_n.shape) or (d < 0).any()
                or not torch.equal(d, d.round())):
            raise ValueError(f"remaining must be a whole number of steps >= 0, or a (B,) tensor of them, "
                             f"got {remaining!r}")
    top2 = a_n.topk(2, dim=1).values                                        # (B, 2)
    top, runner_up = top2[:, 0], top2[:, 1]
    return top * (1 - p_n) ** d >= runner_up + p_n * d


class DactRule(HaltingRule):
    """DACT in ``adaptive.loop``: h = 1 - sigmoid(halt logit), the probability of continuing.

    Eq. 1 multiplies these (the authors' code uses the same sign). Training runs all L steps
    and answers a_L (eq. 2) with the penalty rho (eq. 3). Evaluation carries each sample's
    running answer a_n and p_n from step to step and halts it once eq. 9 proves that the
    remaining steps cannot change its top class.
    """

    name = "dact"

    def halting_values(self, halt_logit):
        return torch.sigmoid(-halt_logit)

    def train(self, logits, h, halting, generator):
        answer = accumulate(F.softmax(logits, dim=-1), h)[:, -1]             # (B, C), a_L
        rho = ponder_cost(h)                                                 # (B,)
        return Training(safe_log(answer), ponder=rho, penalty=rho)

    def evaluation_memory(self, batch, classes, like):
        return {"answer": like.new_zeros(batch, classes),                   # (B, C), a_0 = 0
                "p": like.new_ones(batch)}                                  # (B,), p_0 = 1

    def halt(self, step, halting):
        answer, p = step.memory["answer"], step.memory["p"]
        start = (answer[step.rows], p[step.rows])
        a_n = accumulate(F.softmax(step.logits, dim=-1).unsqueeze(1), step.h.unsqueeze(1), start)[:, -1]
        p_n = halting_probabilities(step.h.unsqueeze(1), p[step.rows])[:, -1]  # (b,)
        answer[step.rows], p[step.rows] = a_n, p_n
        halted = can_halt(a_n, p_n, halting.max_steps - step.n)
        return halted, lambda mask: a_n[mask]

    def decide(self, logits, h, halting, generator):
        batch, steps, classes = logits.shape
        answers = accumulate(F.softmax(logits, dim=-1), h)                   # (B, L, C), a_n
        p = halting_probabilities(h)                                         # (B, L), p_n
        remaining = (halting.max_steps - torch.arange(1, steps + 1, device=h.device)).expand(batch, -1)
        holds = can_halt(answers.flatten(0, 1), p.flatten(), remaining.flatten()).view(batch, steps)
        holds[:, -1] = True                                                  # d = 0 at L: it always holds
        halted_at = first(holds)                                             # (B,), 0-based
        return at(answers, halted_at), halted_at + 1
