"""Probabilistic Adaptive Computation Time (Figurnov, Sobolev & Vetrov 2018).

The number of steps z in {1..L} is a discrete latent variable. Step l has a
halting probability ``h^l`` (the last is 1) and a halting variable ``xi^l``:

* eq. 12 discrete:     ``xi^l ~ Bernoulli(h^l)``;
* eq. 15 thresholded:  ``xi^l = [h^l > 0.5]``;
* eq. 16 relaxed:      ``xi^l ~ RelaxedBernoulli(h^l; lambda)`` (eq. 7);
* eqs. 13 and 17:      ``z^l = xi^l prod_{i<l} (1 - xi^i)`` (stick breaking);
* eq. 14:              ``q(z = l) = h^l prod_{i<l} (1 - h^i)``;
* eq. 19:              the truncated geometric prior on z with penalty tau;
* eq. 23:              ``E log p(z) = -tau N + const``, ``N = sum_l l q(z = l)``.

``PactRule`` is how ``adaptive.loop`` runs PACT.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import _checks
from .rule import HaltingRule, Training, at, first, mix

MODES = ("relaxed", "discrete", "thresholded")


def sample_halt(h: torch.Tensor, mode: str, temperature: float = 1.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Halting variables ``xi`` for halting probabilities ``h``, elementwise.

    * ``"discrete"``: eq. 12, ``xi ~ Bernoulli(h)``, values in {0, 1};
    * ``"thresholded"``: eq. 15, ``xi = [h > 0.5]``, deterministic;
    * ``"relaxed"``: eq. 16 with eq. 7, ``xi = sigmoid((logit h + logit u) / temperature)``,
      ``u ~ Uniform(0, 1)``: reparameterised, so gradients flow into h.

    Args:
        h: halting probabilities of any shape, values in [0, 1].
        mode: one of ``MODES``.
        temperature: the Concrete temperature lambda > 0 (relaxed mode only).
        generator: optional ``torch.Generator`` for reproducible samples.
    Returns:
        tensor shaped like h.
    """
    _checks.probabilities("h", h)
    _checks.choice("mode", mode, MODES)
    temperature = _checks.positive("temperature", temperature)
    _checks.generator(generator, h.device)
    if mode == "thresholded":
        return (h > 0.5).to(h.dtype)
    uniform = torch.rand(h.shape, generator=generator, device=h.device, dtype=h.dtype)
    if mode == "discrete":
        return (uniform < h).to(h.dtype)
    tiny = torch.finfo(h.dtype).tiny
    uniform = uniform.clamp(tiny, 1 - 1e-7)
    logit = torch.logit(h.clamp(tiny, 1 - 1e-7)) + torch.logit(uniform)
    return torch.sigmoid(logit / temperature)


def stick_breaking(xi: torch.Tensor) -> torch.Tensor:
    """Eqs. 13, 14 and 17: ``z^l = xi^l prod_{i<l} (1 - xi^i)`` along dim 1.

    With sampled ``xi`` (eqs. 13, 17) it gives the one-hot or relaxed halting
    distribution; with the probabilities ``h`` themselves (eq. 14) it gives
    ``q(z = l)``. Callers set ``xi[:, -1] = 1`` so the sticks sum to one.

    Args:
        xi: (B, L, ...) values in [0, 1].
    Returns:
        (B, L, ...) stick pieces.
    """
    _checks.as_steps("xi", xi)
    _checks.probabilities("xi", xi)
    survive = torch.cumprod(1 - xi, dim=1)                                  # prod_{i<=l} (1 - xi^i)
    survive_before = torch.cat([torch.ones_like(survive[:, :1]), survive[:, :-1]], dim=1)
    return xi * survive_before


def _last_is_one(h: torch.Tensor) -> torch.Tensor:
    """Replace the last step's value with 1 (eq. 11: ``h^L = 1``), after checking all of h."""
    _checks.probabilities("h", h)
    return torch.cat([h[:, :-1], torch.ones_like(h[:, :1])], dim=1)


def halting_distribution(h: torch.Tensor, mode: str = "relaxed", temperature: float = 1.0,
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample PACT's halting distribution z over the L steps (eqs. 12-17).

    Args:
        h: (B, L) halting probabilities in [0, 1]; the last is taken as 1.
        mode: ``"relaxed"`` (training, eq. 16), ``"discrete"`` (eq. 12) or
            ``"thresholded"`` (eq. 15).
        temperature: Concrete temperature > 0, used by ``"relaxed"``.
        generator: optional ``torch.Generator``.
    Returns:
        (B, L), non-negative, sums to 1 along the steps; one-hot unless relaxed.
        The block's output is ``sum_l z^l u^l`` (eq. 18).
    """
    _checks.as_steps("h", h)
    if h.dim() != 2:
        raise ValueError(f"h must have shape (B, L), got {tuple(h.shape)}")
    xi = sample_halt(h, mode, temperature, generator)                       # (B, L)
    return stick_breaking(_last_is_one(xi))


def halting_probabilities(h: torch.Tensor) -> torch.Tensor:
    """Eq. 14: ``q(z = l) = h^l prod_{i<l} (1 - h^i)``, with ``h^L = 1``; shape (B, L)."""
    _checks.as_steps("h", h)
    return stick_breaking(_last_is_one(h))


def expected_steps(h: torch.Tensor) -> torch.Tensor:
    """Eq. 23: ``N = sum_l l h^l prod_{i<l} (1 - h^i)``, the expected number of steps.

    ``-tau N`` is the expected log truncated-geometric prior up to a constant,
    so ``tau N`` is PACT's differentiable ponder cost.

    Args:
        h: (B, L) halting probabilities in [0, 1]; the last is taken as 1.
    Returns:
        (B,) expected steps, in [1, L].
    """
    q = halting_probabilities(h)                                            # (B, L)
    step_index = torch.arange(1, q.shape[1] + 1, dtype=q.dtype, device=q.device)
    return (q * step_index).sum(dim=1)


def truncated_geometric_log_prob(z, tau: float, L: int) -> torch.Tensor:
    """Eq. 19: ``log TruncatedGeometric(z | tau, L)`` for z in {1..L}.

    ``p(z) = (exp(tau) - 1) / (1 - exp(-tau L)) * exp(-tau z)``: a geometric
    distribution with success probability ``1 - exp(-tau)``, renormalised on {1..L}.

    Args:
        z: int or integer tensor of step counts, each in 1..L.
        tau: penalty > 0 (the log-scale number-of-iterations penalty).
        L: the maximum number of steps, >= 1.
    Returns:
        tensor of log-probabilities shaped like z.
    """
    tau = _checks.positive("tau", tau)
    L = _checks.positive_int("L", L)
    z = torch.as_tensor(z)
    if z.is_floating_point() and not torch.equal(z, z.round()):
        raise ValueError("z must hold whole numbers of steps in 1..L")
    if (z < 1).any() or (z > L).any():
        raise ValueError(f"z must lie in 1..L = 1..{L}, got values in "
                         f"[{z.min().item()}, {z.max().item()}]")
    # log(exp(tau) - 1) = tau + log(1 - exp(-tau)), which does not overflow for large tau
    log_norm = tau + math.log(-math.expm1(-tau)) - math.log(-math.expm1(-tau * L))
    return log_norm - tau * z.to(torch.float64)


class PactRule(HaltingRule):
    """PACT in ``adaptive.loop``: h = sigmoid(halt logit) is the halting probability h^l.

    Training runs all L steps and mixes the step answers with a relaxed sample of z
    (eqs. 16-18); the penalty is the expected number of steps (eq. 23). Evaluation halts at
    the first xi^l = 1, thresholded (eq. 15) or sampled (eq. 12), and answers with that
    step; ``"relaxed"`` evaluation instead runs every step and mixes as in training.
    """

    name = "pact"
    eval_modes = MODES

    def train(self, logits, h, halting, generator):
        z = halting_distribution(h, "relaxed", halting.temperature, generator)  # (B, L)
        N = expected_steps(h)                                                # (B,)
        return Training(F.log_softmax(mix(z, logits), dim=-1), ponder=N, penalty=N)

    def keeps_history(self, halting):
        return halting.eval_mode == "relaxed"

    def halt(self, step, halting):
        if halting.eval_mode == "relaxed":                                  # no early exit

            def answer(mask):
                logits, h = step.past(mask, upto=halting.max_steps)          # asked at n = L only
                z = halting_distribution(h, "relaxed", halting.temperature, step.generator)
                return F.softmax(mix(z, logits), dim=-1)
            return torch.zeros_like(step.h, dtype=torch.bool), answer
        halted = sample_halt(step.h, halting.eval_mode, generator=step.generator).bool()
        return halted, lambda mask: F.softmax(step.logits[mask], dim=-1)

    def decide(self, logits, h, halting, generator):
        if halting.eval_mode == "relaxed":
            z = halting_distribution(h, "relaxed", halting.temperature, generator)
            steps = torch.full(h.shape[:1], h.shape[1], dtype=torch.int64, device=h.device)
            return F.softmax(mix(z, logits), dim=-1), steps
        xi = sample_halt(h, halting.eval_mode, generator=generator).bool()   # (B, L); all L drawn at once
        xi[:, -1] = True                                                     # h^L = 1 (eq. 11)
        halted_at = first(xi)
        return F.softmax(at(logits, halted_at), dim=-1), halted_at + 1
