"""adaptive: halting mechanisms that let a network choose how much computation each input gets.

Modules:
    act        -- Adaptive Computation Time (Graves 2016)
    dact       -- Differentiable ACT and its halting bound (Eyzaguirre & Soto 2020)
    pact       -- Probabilistic ACT (Figurnov, Sobolev & Vetrov 2018)
    pondernet  -- PonderNet (Banino et al. 2021)
    loop       -- one loop that makes any step function adaptive under any mechanism
    parity     -- Graves' parity task
"""
from . import act, dact, pact, pondernet

__all__ = ["act", "dact", "pact", "pondernet"]
__version__ = "0.1.0"
