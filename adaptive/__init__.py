"""adaptive: halting mechanisms that let a network choose how much computation each input gets.

The mechanisms are one module each, plain functions of (B, L) tensors ending with the rule
that ``loop`` follows; every chapter's models use them through that loop or, per position,
through ``spatial.halting``. Imports point one way: chapter packages -> ``loop``, ``benchmark``
and ``infra`` -> the mechanisms -> ``_checks`` and ``numerics``.

Mechanisms:
    act        -- Adaptive Computation Time (Graves 2016)
    dact       -- Differentiable ACT and its halting bound (Eyzaguirre & Soto 2020)
    pact       -- Probabilistic ACT (Figurnov, Sobolev & Vetrov 2018)
    pondernet  -- PonderNet (Banino et al. 2021)
The loop and what every chapter shares:
    loop       -- one loop that makes any step function adaptive under any mechanism
    benchmark  -- what the mechanisms cost in the loop and what early exit saves (chapter 4)
    infra      -- checkpoints, results files, seeding, timing, distributed set-up
    numerics   -- a safe log and fast subnormals; ``_checks``: input validation
Chapters:
    parity     -- chapter 3: Graves' parity task, its network and training runs
    clevr      -- chapter 5: MAC on mini-CLEVR and CLEVR, with ACT and DACT
    spatial    -- chapter 6: ACT per block, SACT and PSACT on residual networks
"""
from . import act, dact, loop, pact, pondernet

__all__ = ["act", "dact", "loop", "pact", "pondernet"]
__version__ = "0.1.0"
