"""Adaptive Computation Time (Graves 2016).

Notation follows the SACT slides (Figurnov et al. 2017, "ACT going deeper" and
Algorithm 1), which restate Graves' equations for a block of L steps:

* halting scores ``h_n`` in [0, 1], with the last one taken as ``h_L = 1``;
* ``N = min{n : sum_{l<=n} h_l >= 1 - eps}``, the number of steps evaluated;
* remainder ``R = 1 - sum_{l<N} h_l``;
* halting distribution ``p_n = h_n`` for n < N, ``R`` at n = N, 0 after;
* ponder cost ``rho = N + R``, whose gradient is -1 for every h_n before N
  and 0 from N on (N itself is piecewise constant, its gradient is ignored).

``ActRule`` is how ``adaptive.loop`` runs ACT.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import _checks
from .rule import HaltingRule, Training, mix


def sum_reached(sums: torch.Tensor, eps: float) -> torch.Tensor:
    """Whether running sums of halting scores have reached ``1 - eps``: the condition inside
    Graves' definition of N (eq. 5 of Graves 2016), elementwise on sums of any shape.

    ``reached_threshold`` applies it to every prefix of a (B, L) row at once; a loop that adds
    one step's scores at a time (``adaptive.spatial.halting.run_block``) applies it to its
    running sum, O(1) per step instead of the whole prefix again.
    """
    return sums >= 1 - eps


def reached_threshold(h: torch.Tensor, eps: float = 0.01) -> torch.Tensor:
    """Whether the running sum of halting scores has reached ``1 - eps`` by step n.

    This is the condition inside Graves' definition of N (eq. 5 of Graves 2016;
    SACT slides, "N - number of residual units to evaluate"). It does not apply
    the ``h_L = 1`` convention: it answers for the scores as given, which is what
    an evaluation loop needs when it has only computed a prefix of the steps.

    Args:
        h: halting scores, shape (B, L), values in [0, 1].
        eps: the slack in ``1 - eps``, in (0, 1).
    Returns:
        (B, L) bool, True at step n when ``sum_{l<=n} h_l >= 1 - eps``.
    """
    _checks.as_steps("h", h, dims=2)
    _checks.probabilities("h", h)
    eps = _checks.open_unit("eps", eps)
    return sum_reached(h.cumsum(dim=1), eps)


def halting_distribution(h: torch.Tensor, eps: float = 0.01):
    """ACT's halting distribution, ponder cost and number of steps.

    Graves (2016) eqs. 5-8; SACT slides, Algorithm 1. The last step's score is
    taken as 1 whatever ``h[:, -1]`` holds, so every sample halts by step L.

    Args:
        h: halting scores, shape (B, L), values in [0, 1].
        eps: halting threshold slack, in (0, 1).
    Returns:
        weights: (B, L), ``h_n`` before N, the remainder R at N, 0 after; sums to 1.
        rho: (B,), the ponder cost N + R. Differentiable: d rho / d h_n is -1
            for n < N and 0 for n >= N.
        N: (B,) int64, the 1-based number of steps used.
    """
    _checks.as_steps("h", h)
    _checks.probabilities("h", h)                 # all of h, the ignored last score included
    batch, steps = h.shape[0], h.shape[1]
    if h.dim() != 2:
        raise ValueError(f"h must have shape (B, L), got {tuple(h.shape)}")
    last_is_one = torch.ones(batch, 1, dtype=h.dtype, device=h.device)
    h = torch.cat([h[:, :-1], last_is_one], dim=1)                        # (B, L), h_L = 1
    reached = reached_threshold(h, eps)                                   # (B, L) bool
    N = reached.to(torch.int64).argmax(dim=1) + 1                         # (B,), first True, 1-based
    step_index = torch.arange(1, steps + 1, device=h.device)              # (L,)
    before_N = step_index.unsqueeze(0) < N.unsqueeze(1)                   # (B, L)
    at_N = step_index.unsqueeze(0) == N.unsqueeze(1)                      # (B, L)
    remainder = 1 - (h * before_N).sum(dim=1)                             # (B,) R
    weights = torch.where(before_N, h, torch.zeros_like(h))
    weights = weights + at_N * remainder.unsqueeze(1)                     # (B, L)
    rho = N.to(h.dtype) + remainder                                       # (B,)
    return weights, rho, N


class ActRule(HaltingRule):
    """ACT in ``adaptive.loop``: h = sigmoid(halt logit) is the halting score h_n.

    Training mixes the step answers with the halting distribution (eqs. 5-8) and stops
    unrolling once every sample has halted; the penalty is rho = N + R. Evaluation halts a
    sample once its scores reach 1 - eps, with the same mixture of its prefix.
    """

    name = "act"
    initial_halt_bias = 1.0              # Graves (2016), sec. 3: "initialised to 1"
    uses_every_step = False              # training stops once the whole batch has halted

    def unrolled_enough(self, h, halting):
        return bool(reached_threshold(torch.stack(h, dim=1), halting.eps)[:, -1].all())

    def train(self, logits, h, halting, generator):
        weights, rho, N = halting_distribution(h, halting.eps)               # (B, L'), (B,), (B,)
        return Training(F.log_softmax(mix(weights, logits), dim=-1), ponder=rho, penalty=rho, steps=N)

    def keeps_history(self, halting):
        return True

    def evaluation_memory(self, batch, classes, like):
        # sum_{l<=n} h_l per sample, in float64 as the CPU's cumsum accumulates, so that adding one
        # step at a time decides as reached_threshold on the whole prefix would
        return {"score_sum": torch.zeros(batch, dtype=torch.float64, device=like.device)}

    def halt(self, step, halting):
        score_sum = step.memory["score_sum"]
        score_sum[step.rows] += step.h.double()
        halted = sum_reached(score_sum[step.rows].to(step.h.dtype), halting.eps)   # (b,)

        def answer(mask):
            logits, h = step.past(mask)                                      # (k, n, C), (k, n)
            weights, _, _ = halting_distribution(h, halting.eps)
            return F.softmax(mix(weights, logits), dim=-1)
        return halted, answer

    def decide(self, logits, h, halting, generator):
        weights, _, N = halting_distribution(h, halting.eps)                 # zero weight after N
        return F.softmax(mix(weights, logits), dim=-1), N
