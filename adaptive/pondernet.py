"""PonderNet (Banino, Balaguer & Blundell 2021).

PonderNet's halting distribution is PACT's ``q(z)`` (eq. 14 of Figurnov et al.
2018) under another name: step n has a conditional halting probability
``lambda_n``, and ``p_n = lambda_n prod_{j<n} (1 - lambda_j)``. With a maximum
of L steps the last ``lambda_L`` is taken as 1, so the distribution sums to one.

Training minimises (PonderNet eqs. 4-6)

    L = sum_n p_n loss(y, y_hat_n) + beta KL(p || p_G(lambda_p)),

the reconstruction term being the expected per-step loss and the regulariser
the KL from the halting distribution p **to** a geometric prior p_G with
success probability lambda_p, truncated to L steps and renormalised. At
evaluation a step halts with probability lambda_n (a Bernoulli draw).
``PonderNetRule`` is how ``adaptive.loop`` runs PonderNet.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import _checks, pact
from .numerics import safe_log
from .rule import Training


def halting_distribution(lam: torch.Tensor) -> torch.Tensor:
    """``p_n = lambda_n prod_{j<n} (1 - lambda_j)`` with ``lambda_L = 1``; shape (B, L).

    The same formula as PACT's eq. 14, so it is computed there.
    """
    _checks.as_steps("lam", lam)
    if lam.dim() != 2:
        raise ValueError(f"lam must have shape (B, L), got {tuple(lam.shape)}")
    _checks.probabilities("lam", lam)
    return pact.halting_probabilities(lam)


def geometric_prior(lambda_p: float, L: int) -> torch.Tensor:
    """The geometric prior ``p_G(n) = lambda_p (1 - lambda_p)^(n-1)``, truncated to n <= L and renormalised.

    It equals PACT's truncated geometric distribution (eq. 19) with
    ``tau = -log(1 - lambda_p)``, so it is computed from there.

    Args:
        lambda_p: prior halting probability per step, in (0, 1).
        L: maximum number of steps, >= 1.
    Returns:
        (L,) float64 probabilities summing to 1.
    """
    lambda_p = _checks.open_unit("lambda_p", lambda_p)
    L = _checks.positive_int("L", L)
    tau = -math.log1p(-lambda_p)
    return pact.truncated_geometric_log_prob(torch.arange(1, L + 1), tau, L).exp()


def kl_to_prior(p: torch.Tensor, lambda_p: float) -> torch.Tensor:
    """``KL(p || p_G) = sum_n p_n (log p_n - log p_G(n))`` per sample (PonderNet eq. 6).

    The direction matters: the halting distribution p comes first, the prior
    second (the reverse is a known mistake in public ports).

    Args:
        p: (B, L) halting distribution (rows sum to 1).
        lambda_p: the prior's halting probability, in (0, 1).
    Returns:
        (B,) KL divergences, >= 0.
    """
    _checks.as_steps("p", p, dims=2)
    _checks.distributions("p", p)
    prior = geometric_prior(lambda_p, p.shape[1]).to(p.dtype).to(p.device)   # (L,)
    # 0 log 0 = 0. Clamping inside the log (rather than xlogy, whose gradient at
    # p = 0 is NaN) keeps the gradient finite once a lambda saturates at 1 and
    # every later p_n is exactly 0, as happens in float32 training.
    return (p * (safe_log(p) - prior.log())).sum(dim=1)


def reconstruction_loss(step_losses: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``sum_n p_n loss_n`` per sample: the expected loss under the halting distribution (eq. 5).

    Args:
        step_losses: (B, L) the task loss of each step's prediction.
        p: (B, L) halting distribution.
    Returns:
        (B,) expected losses.
    """
    _checks.as_steps("step_losses", step_losses, dims=2)
    _checks.as_steps("p", p, dims=2)
    _checks.same_leading_shape("step_losses", step_losses, "p", p, dims=2)
    return (p * step_losses).sum(dim=1)


class PonderNetRule(pact.PactRule):
    """PonderNet in ``adaptive.loop``: PACT's q(z) and evaluation, PonderNet's loss.

    Training runs all L steps; the answer is the mixture ``sum_n p_n y_n`` of the step
    answers (class probabilities), the task loss is the expected per-step loss (eq. 5) and
    the penalty, weighed by beta (``Halting.tau``), is ``KL(p || p_G)`` (eq. 6). At
    evaluation a step halts with probability lambda_n (``eval_mode="discrete"``), or where
    lambda_n > 0.5 (``"thresholded"``), as PACT does.
    """

    name = "pondernet"
    penalty_name = "beta"

    def train(self, logits, h, halting, generator):
        p = halting_distribution(h)                                          # (B, L)
        mixture = (p.unsqueeze(-1) * F.softmax(logits, dim=-1)).sum(dim=1)   # (B, C)
        return Training(safe_log(mixture), ponder=pact.expected_steps(h),   # the same q(z) as PACT
                        penalty=kl_to_prior(p, halting.prior), weights=p)

    def task_loss(self, logits, mixed, target):
        step_losses = F.cross_entropy(logits.transpose(1, 2),                # (B, L)
                                      target.unsqueeze(1).expand(-1, logits.shape[1]), reduction="none")
        return reconstruction_loss(step_losses, mixed.weights).mean()
