"""Chapter 5: MAC with ACT and DACT on CLEVR: mini-CLEVR on CPU, real CLEVR v1.0 on a GPU.

Both datasets share one layout (``<root>/questions``, ``<root>/scenes``, ``<root>/images``,
``<root>/features/<split>.h5``) and one loader, so a model never knows which it reads.

Modules:
    scenes     -- CLEVR's attribute vocabularies, scene sampling on a ground plane, relationships
    render     -- the 2D Pillow drawing of a mini-CLEVR scene
    templates  -- the project's own question templates, one list per template file
    executor   -- runs a CLEVR functional program on a scene (answers are computed, never typed)
    minigen    -- the mini-CLEVR generator and its CLI (``python -m adaptive.clevr.minigen``)
    questions  -- reading question files, tokens, vocabulary, global family ids, question types
    features   -- image features in HDF5, read lazily; pixel grids (mini), ResNet-101 (real CLEVR)
    dataset    -- the torch Dataset, a loader that reshuffles every epoch from a seed, its shards
    mac        -- the MAC network as a step function (control, read, write units)
    train      -- training MAC with a fixed number of steps, ACT or DACT; torchrun
    pretrain   -- the shipped 12-step MAC: its recipe, training and recording it, evaluating it in the build
    gqa        -- GQA, the DACT paper's second data set, read from its published files into the same examples
    benchmark  -- MAC against MAC+ACT / MAC+DACT at CLEVR's shape, and early exit
"""
