"""adaptive: halting mechanisms that let a network choose how much computation each input gets.

Modules:
    act        -- Adaptive Computation Time (Graves 2016)
    dact       -- Differentiable ACT and its halting bound (Eyzaguirre & Soto 2020)
    pact       -- Probabilistic ACT (Figurnov, Sobolev & Vetrov 2018)
    pondernet  -- PonderNet (Banino et al. 2021)
    loop       -- one loop that makes any step function adaptive under any mechanism
    parity     -- Graves' parity task, with a held-out split and PonderNet's extrapolation split
    models     -- small step functions for the toy tasks
    training   -- seeded, checkpointed, resumable training runs and grids
    checkpoint -- atomic checkpoints that refuse a different configuration
    results    -- the results file every training chapter writes
    benchmark  -- what the mechanisms cost and what early exit saves
    resnet, flops -- pre-activation ResNets (CIFAR 6n+2, ResNet-101) and FLOPs in the SACT convention
    cifar, spatial_data -- data of the spatial (SACT / PSACT) chapter: CIFAR-10, generated objects
    spatial    -- ACT per block, SACT and PSACT on ResNets: one block loop over act / pact, sparse evaluation
    spatial_train -- training them (objects on a CPU, CIFAR-10 on GPUs, torchrun), gradient variance
    spatial_benchmark -- their images per second, training and dense / sparse evaluation
    mac        -- the MAC network as a step function (control, read, write units)
    clevr      -- the visual-reasoning chapter: mini-CLEVR, CLEVR questions and features, MAC training
"""
from . import act, dact, loop, pact, parity, pondernet

__all__ = ["act", "dact", "loop", "pact", "parity", "pondernet"]
__version__ = "0.1.0"
