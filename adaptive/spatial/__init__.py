"""Chapter 6: ACT per residual block, SACT and PSACT on residual networks.

Modules:
    halting   -- ``SpatialHalting``, halting units and the block loop over ``act`` / ``pact`` rules
    sparse    -- evaluation that computes a unit only at the positions still active
    resnet    -- pre-activation ResNets (CIFAR 6n+2, ResNet-101)
    flops     -- FLOPs in the SACT convention
    objects   -- the generated objects with their masks (the CPU data set)
    cifar     -- CIFAR-10, read safely from the official archive
    train     -- training (objects on a CPU, CIFAR-10 on GPUs, torchrun), gradient variance
    benchmark -- images per second, training and dense / sparse evaluation
"""
