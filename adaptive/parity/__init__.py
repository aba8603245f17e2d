"""Chapter 3: Graves' parity task, the network that ponders over it, and its training runs.

Modules:
    task   -- the parity task, with a held-out split and PonderNet's extrapolation split
    model  -- ``ParityRNN``, a GRU cell as a step function of ``adaptive.loop``
    train  -- seeded, checkpointed, resumable training runs and grids
"""
from .task import Parity, extrapolation_split

__all__ = ["Parity", "extrapolation_split"]
