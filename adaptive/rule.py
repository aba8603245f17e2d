"""What a halting rule tells the loop: the protocol every mechanism module ends with.

``adaptive.loop.run`` knows no mechanism by name. It unrolls a step function and asks the
mechanism's rule, a small object at the end of ``act.py``, ``dact.py``, ``pact.py`` and
``pondernet.py`` (the non-adaptive ``fixed`` rule lives in ``loop.py``):

* ``halting_values``: how h comes from the step's halting logit;
* in training, ``unrolled_enough`` (may the loop stop before L steps?), ``train`` (how the
  step answers are mixed into one answer, with the ponder quantity and the per-sample
  penalty) and ``task_loss``;
* in evaluation, ``keeps_history`` and ``evaluation_memory`` (what is kept of each sample's
  past steps) and ``halt`` (which samples halt now, and with which answer).

``HaltingRule`` gives the common defaults, so a rule states only what its paper changes.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

Answer = Callable[[torch.Tensor], torch.Tensor]     # (b,) bool mask -> (k, C) class probabilities


def mix(weights: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``sum_n w_n logits_n``: weights (B, L), per-step logits (B, L, C) -> (B, C)."""
    return (weights.unsqueeze(-1) * logits).sum(dim=1)


class Training(NamedTuple):
    """What a rule makes of the unrolled steps in training.

    Attributes:
        log_probs: (B, C) log-probabilities of the mixed answer.
        ponder: (B,) the differentiable ponder quantity (rho, or the expected steps).
        penalty: (B,) the per-sample penalty that tau (or PonderNet's beta) weighs.
        steps: (B,) int64 steps used, or None: all the steps computed.
        weights: (B, L') the weight of each step's answer in the mixed one, where the loss
            needs it again (PonderNet's expected per-step loss), or None.
    """

    log_probs: torch.Tensor
    ponder: torch.Tensor
    penalty: torch.Tensor
    steps: torch.Tensor | None = None
    weights: torch.Tensor | None = None


@dataclass
class EvalStep:
    """What evaluation knows after step n about the b samples still running.

    Attributes:
        n: the step just computed, 1-based.
        logits: (b, C) its logits.
        h: (b,) its h, in the mechanism's convention.
        rows: (b,) int64, the running samples' indices in the batch.
        memory: the rule's own full-batch tensors (``evaluation_memory``), indexed by rows.
        history: (logits (B, L, C), h (B, L)) of every step so far, when the rule keeps it.
        generator: the ``torch.Generator`` of the run's random draws, or None.
    """

    n: int
    logits: torch.Tensor
    h: torch.Tensor
    rows: torch.Tensor
    memory: dict
    history: tuple[torch.Tensor, torch.Tensor] | None
    generator: torch.Generator | None

    def past(self, mask: torch.Tensor | None = None, upto: int | None = None):
        """The logits (k, n, C) and h (k, n) of steps 1..n (or 1..upto) of the rows in ``mask``."""
        rows = self.rows if mask is None else self.rows[mask]
        logits, h = self.history
        upto = self.n if upto is None else upto
        return logits[rows, :upto], h[rows, :upto]


class HaltingRule:
    """The defaults of a halting rule; each mechanism overrides what its paper defines.

    Attributes:
        name: the method's name in ``adaptive.loop.Halting``.
        penalty_name: what the paper calls the penalty's weight (``Halting.tau`` holds it).
        eval_modes: the evaluation modes the rule distinguishes (``Halting.eval_mode``).
        initial_halt_bias: the halting logit's initial bias its paper recommends.
        uses_every_step: training always runs all L steps and reads every halting logit
            (data-parallel training then needs no search for unused parameters).
    """

    name: str
    penalty_name: str | None = "tau"
    eval_modes: tuple[str, ...] = ("thresholded",)
    initial_halt_bias: float = 0.0
    uses_every_step: bool = True

    def halting_values(self, halt_logit: torch.Tensor) -> torch.Tensor:
        """h from the step's halting logit (b,): the probability of halting, by default."""
        return torch.sigmoid(halt_logit)

    # --- training -----------------------------------------------------------------------------
    def unrolled_enough(self, h: list[torch.Tensor], halting) -> bool:
        """Whether training may stop unrolling after the steps whose h (B,) are listed."""
        return False

    def train(self, logits: torch.Tensor, h: torch.Tensor, halting,
              generator: torch.Generator | None) -> Training:
        """Mix the per-step logits (B, L', C) by the halting values (B, L')."""
        raise NotImplementedError

    def task_loss(self, logits: torch.Tensor, mixed: Training, target: torch.Tensor) -> torch.Tensor:
        """The task loss of the mixed answer: its negative log-likelihood, averaged."""
        return F.nll_loss(mixed.log_probs, target)

    def loss(self, logits: torch.Tensor, mixed: Training, target: torch.Tensor,
             tau: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The training objective: (task loss + tau * mean penalty, the task loss, tau * mean penalty)."""
        task_loss = self.task_loss(logits, mixed, target)
        penalty = tau * mixed.penalty.mean()
        return task_loss + penalty, task_loss, penalty

    # --- evaluation ---------------------------------------------------------------------------
    def keeps_history(self, halting) -> bool:
        """Whether evaluation needs every past step's logits and h (``EvalStep.past``)."""
        return False

    def evaluation_memory(self, batch: int, classes: int, like: torch.Tensor) -> dict:
        """The full-batch tensors this rule carries from step to step in evaluation."""
        return {}

    def halt(self, step: EvalStep, halting) -> tuple[torch.Tensor, Answer]:
        """Which running samples halt after ``step.n`` ((b,) bool), and a function giving the
        (k, C) class probabilities of the rows a (b,) mask selects (only halted rows are asked)."""
        raise NotImplementedError

    @property
    def decides(self) -> bool:
        """Whether the rule defines ``decide``: ``early_exit="auto"`` can fall back only to a rule that does."""
        return type(self).decide is not HaltingRule.decide

    def decide(self, logits: torch.Tensor, h: torch.Tensor, halting,
               generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """What ``halt`` decides, for a batch whose steps were all computed: per-step logits
        (B, L', C) and h (B, L') -> the (B, C) class probabilities and the (B,) int64 steps at
        which each sample halts. Evaluation without early exit (``Halting.early_exit=False``)."""
        raise NotImplementedError


def first(holds: torch.Tensor) -> torch.Tensor:
    """(B, L) bool, True somewhere in every row -> (B,) int64, the 0-based index of the first True."""
    return holds.to(torch.int8).argmax(dim=1)


def at(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values[b, index[b]] for every row b: (B, L, ...) and (B,) -> (B, ...)."""
    return values[torch.arange(values.shape[0], device=values.device), index]
