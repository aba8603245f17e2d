"""What no chapter owns: the infrastructure every chapter's training and benchmarks share.

Modules:
    checkpoint   -- atomic checkpoints that refuse a different configuration
    results      -- the results file every training chapter writes
    seeding      -- seeds and generators derived from several numbers
    distributed  -- torchrun process groups, sharding and all-reduced sums
    benchmarking -- device-synchronised timing and the benchmarks' report writer
"""
