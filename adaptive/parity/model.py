"""Small step functions for the toy tasks.

``ParityRNN`` is Graves' parity network: a recurrent cell that sees the whole
input at every step (with a flag marking the first step), an output layer
giving class logits, and a halting unit giving one logit per sample. Its
``step`` has the signature ``adaptive.loop`` expects, so any mechanism can
drive it and none is written into the model.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import _checks


class ParityRNN(nn.Module):
    """A GRU cell pondering over one input vector.

    Args:
        size: input length.
        hidden: hidden units.
        classes: output classes (2 for parity).
        halt_bias: initial bias of the halting logit (Graves initialises ACT's
            halting bias to 1; DACT's authors use 0).
        input_every_step: the cell sees the input at every step, as in Graves' network (True),
            or at the first step only, zeros after (False): then the input must be carried in
            the hidden state, and what is computed from it takes steps.
    """

    def __init__(self, size: int, hidden: int = 128, classes: int = 2, halt_bias: float = 0.0,
                 input_every_step: bool = True):
        super().__init__()
        if not isinstance(input_every_step, bool):
            raise ValueError(f"input_every_step must be True or False, got {input_every_step!r}")
        self.input_every_step = input_every_step
        _checks.positive_int("size", size)
        _checks.positive_int("hidden", hidden)
        _checks.positive_int("classes", classes)
        self.hidden = hidden
        self.cell = nn.GRUCell(size + 1, hidden)
        self.output = nn.Linear(hidden, classes)
        self.halt = nn.Linear(hidden, 1)
        nn.init.constant_(self.halt.bias, halt_bias)

    def initial_state(self, x: torch.Tensor):
        """State = (input, hidden, first-step flag), all batch first."""
        batch = x.shape[0]
        return (x, x.new_zeros(batch, self.hidden), x.new_ones(batch, 1))

    def step(self, state):
        """One pondering step: (x, s, flag) -> (logits (b, C), halt logit (b,), new state)."""
        x, hidden, flag = state
        seen = x if self.input_every_step else x * flag                         # (b, size): zeros after step 1
        hidden = self.cell(torch.cat([seen, flag], dim=1), hidden)              # (b, H)
        return self.output(hidden), self.halt(hidden).squeeze(1), (x, hidden, torch.zeros_like(flag))
