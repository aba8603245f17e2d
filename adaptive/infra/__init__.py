"""What no chapter owns: the infrastructure every chapter's training and benchmarks share.

Modules:
    trainer      -- the trainer skeleton: resume, the loop over units, evaluations, checkpoints
    checkpoint   -- atomic checkpoints that refuse a different configuration
    results      -- the results file every training chapter writes
    seeding      -- seeds and generators derived from several numbers
    cli          -- a command line built from a configuration dataclass
    pool         -- many small CPU trainings at once, one process per worker
    distributed  -- torchrun process groups, sharding and all-reduced sums
    benchmarking -- device-synchronised timing and the benchmarks' report writer
    gpu_check    -- `make gpu-check`: every GPU measurement of the book, one JSON file
    notebook     -- the chapters' shared helpers: measured numbers glued into the text, figures
    pretrained   -- shipped pretrained models: files, their manifest (hash, command, seed, commit, curve)
    claims       -- the claims table that ends every chapter: the papers' claims against ours, over seeds

Nothing here imports a chapter package.
"""
