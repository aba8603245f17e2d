"""Benchmark: images per second of fixed (plain), ACT, SACT and PSACT ResNets, training and evaluation.

For each method the table gives:

* training images/s: one SGD update (forward, loss, backward, optimiser) on a batch, in the
  method's training mode (every unit runs, the residual multiplied by the mask);
* evaluation images/s, dense (every unit computed, inactive positions masked) and sparse
  (``sparse=True``: only active positions computed, see ``adaptive.spatial``), with the
  FLOPs of that evaluation as a share of the plain network's;
* the projected time of the SACT recipe's 100,000 optimiser updates at this batch size.

Untrained halting units compute everything (their bias starts at -3), which would measure
only the overhead. With ``--halting-bias B`` every halting unit gets bias B and random
3x3 weights (seeded), so that a share of the positions halts and the sparse evaluation has
something to skip; the FLOPs column says how much. Timings alternate between the methods
within one run (machine noise hits all alike) and the median of the repeats is reported.

With ``--sparsity-sweep`` it measures one residual unit instead: dense (``u + f(u) * mask``)
against sparse evaluation (``adaptive.spatial.sparse.apply_unit``) over active fractions from
10 % to 100 %, on CIFAR's maps (32x32 with 16 channels, 16x16 with 32, 8x8 with 64, batch 128)
and on ImageNet-like ones (56x56 with 64 channels, 112x112 with 64 and 128). The masks are blobs, as
trained SACT's ponder maps are, not uniform noise (``blob_masks``), and the maps are channels-last, as
a network evaluating sparsely would keep them (``MEMORY_FORMAT``). Each row gives the active
fraction, the share of blocks computed (``computed_fraction``), the seconds of both (the fastest
round's) and their ratio with its spread over the timing rounds, and the same for the block path forced at every
fraction (``blocks_ratio``: where it crosses 1 is the break-even, ``sparse.BREAK_EVEN``).

On a CPU, glibc hands large freed blocks back to the system and the next allocation pays page
faults for them; how often depends on what ran before, so that interleaved with the block path
the dense unit measured up to twice its own time. The command therefore runs with glibc told to
keep what it frees (``adaptive.infra.benchmarking.steady_allocator``); the result's config
records the ``MALLOC_`` variables it ran with.

    python -m adaptive.spatial.benchmark --depth 110 --batch 128 --device cuda --bf16
    python -m adaptive.spatial.benchmark --quick          # a small CPU version
    python -m adaptive.spatial.benchmark --sparsity-sweep --json build/sparsity.json
    python -m adaptive.spatial.benchmark --sparsity-sweep --quick    # two shapes, a few seconds
"""
from __future__ import annotations

import argparse
import json
import math
import statistics

import torch
import torch.nn.functional as F

from .. import _checks
from ..infra.benchmarking import allocator, interleaved, ratio, steady_allocator, timed, write_report
from ..numerics import flush_denormals
from . import halting as spatial
from . import sparse
from .resnet import BasicUnit, cifar_resnet

METHODS = ("fixed", "act", "sact", "psact")
RECIPE_UPDATES = 100_000
# The sparsity sweep: (batch, channels, map side) of one residual unit, and the active fractions
SWEEP_SHAPES = ((128, 16, 32), (128, 32, 16), (128, 64, 8), (8, 64, 56), (8, 64, 112), (4, 128, 112))
SWEEP_FRACTIONS = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
QUICK_SWEEP_SHAPES = ((128, 16, 32), (8, 64, 56))
QUICK_SWEEP_FRACTIONS = (0.1, 0.3, 1.0)
BLOB_SCALE = 1 / 8          # the blobs' smoothing width, as a share of the map side
MEMORY_FORMAT = torch.channels_last   # the sweep's maps: as a network evaluating sparsely keeps them


def build(method: str, depth: int, halting_bias: float | None, seed: int = 0) -> spatial.AdaptiveResNet:
    """A ``depth`` CIFAR ResNet under ``method``; halting units set to ``halting_bias`` if given."""
    torch.manual_seed(seed)
    model = spatial.AdaptiveResNet(cifar_resnet(depth, 10), spatial.SpatialHalting(method, tau=0.01))
    if method != "fixed" and halting_bias is not None:
        generator = torch.Generator().manual_seed(seed)
        for block in model.halting_units:
            for unit in block:
                unit.linear.bias.data.fill_(halting_bias)
                if unit.conv is not None:
                    unit.conv.weight.data = torch.randn(unit.conv.weight.shape, generator=generator) * 0.05
    return model


@flush_denormals()
def measure(depth: int = 110, batch: int = 128, device: str = "cpu", bf16: bool = False,
            methods=METHODS, repeats: int = 5, halting_bias: float | None = 0.0, seed: int = 0) -> dict:
    """Time every method; returns ``{"config": ..., "rows": [...]}``."""
    for method in methods:
        _checks.choice("methods", method, METHODS)
    _checks.positive_int("batch", batch)
    _checks.positive_int("repeats", repeats)
    device = _checks.device(device)
    use_bf16 = bf16 and device.type == "cuda"
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, 32, 32, generator=generator).to(device)
    labels = torch.randint(0, 10, (batch,), generator=generator).to(device)
    models = {m: build(m, depth, halting_bias, seed).to(device) for m in methods}
    optimizers = {m: torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9) for m, model in models.items()}
    sample = torch.Generator(device=device).manual_seed(seed)

    def train_update(method):
        model = models[method].train()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            loss = model(images, labels, generator=sample).loss
        optimizers[method].zero_grad(set_to_none=True)
        loss.backward()
        optimizers[method].step()

    def evaluate(method, sparse):
        model = models[method].eval()
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            return model(images, sparse=sparse and method != "fixed", generator=sample)

    tasks = {}
    for method in methods:
        tasks[(method, "train")] = lambda m=method: train_update(m)
        tasks[(method, "dense")] = lambda m=method: evaluate(m, False)
        tasks[(method, "sparse")] = lambda m=method: evaluate(m, True)
    for fn in tasks.values():                     # warm-up (allocations, kernels)
        fn()
    times = {key: [] for key in tasks}
    for _ in range(repeats):
        for key, fn in tasks.items():
            times[key].append(timed(fn, device))
    rows = []
    for method in methods:
        seconds = {kind: statistics.median(times[(method, kind)]) for kind in ("train", "dense", "sparse")}
        out = evaluate(method, False)
        rows.append({"method": method,
                     "train_images_per_s": batch / seconds["train"],
                     "eval_dense_images_per_s": batch / seconds["dense"],
                     "eval_sparse_images_per_s": batch / seconds["sparse"],
                     "eval_flops_ratio": out.flops.mean().item() / models[method].plain_flops,
                     "projected_recipe_hours": RECIPE_UPDATES * seconds["train"] / 3600})
    config = dict(depth=depth, batch=batch, device=str(device), bf16=use_bf16, repeats=repeats,
                  halting_bias=halting_bias, seed=seed, torch=torch.__version__)
    if device.type == "cuda":
        config["gpu"] = torch.cuda.get_device_name(device)
    return {"config": config, "rows": rows}


def markdown(result: dict) -> str:
    """The result as a markdown table."""
    lines = ["| method | train img/s | eval dense img/s | eval sparse img/s | eval FLOPs / plain | "
             f"{RECIPE_UPDATES:,} updates (h) |", "|---|---|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(f"| {row['method']} | {row['train_images_per_s']:.0f} | {row['eval_dense_images_per_s']:.0f} | "
                     f"{row['eval_sparse_images_per_s']:.0f} | {row['eval_flops_ratio']:.3f} | "
                     f"{row['projected_recipe_hours']:.1f} |")
    return "\n".join(lines)


def blob_masks(batch: int, height: int, width: int, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """(batch, height, width) 0/1 masks with ``round(fraction * height * width)`` active positions each, in blobs.

    Trained SACT's ponder maps are high on the objects and low elsewhere: a few smooth regions,
    not uniform noise. Gaussian noise smoothed by a Gaussian of width ``BLOB_SCALE`` times the
    map side (wrapping around the edges), and its highest positions kept, gives such regions.
    """
    sigma = BLOB_SCALE * min(height, width)
    radius = math.ceil(3 * sigma)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-offsets ** 2 / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()                                          # (2 r + 1,)
    noise = torch.randn(batch, 1, height, width, generator=generator)
    noise = F.pad(noise, (radius, radius, radius, radius), mode="circular")
    smooth = F.conv2d(F.conv2d(noise, kernel.view(1, 1, 1, -1)), kernel.view(1, 1, -1, 1))  # (B, 1, H, W)
    keep = round(fraction * height * width)
    mask = torch.zeros(batch, height * width)
    mask.scatter_(1, smooth.flatten(1).topk(keep, dim=1).indices, 1.0)
    return mask.view(batch, height, width)


@flush_denormals()
def sparsity_sweep(quick: bool = False, device: str = "cpu", seed: int = 0, rounds: int | None = None,
                   min_seconds: float = 0.05, shapes=None, fractions=None) -> dict:
    """Dense against sparse evaluation of one residual unit, per map shape and active fraction.

    For every (batch, channels, map side) in ``shapes`` and fraction in ``fractions``: a
    ``BasicUnit`` with random batch-norm statistics (seeded), an input and ``blob_masks``, and
    three variants timed in interleaved rounds: ``dense`` = ``u + f(u) * mask``, ``sparse`` =
    ``apply_unit(..., sparse=True)`` (what the network runs, with its fallback to the dense unit
    above ``sparse.BREAK_EVEN`` and on maps smaller than ``sparse.MIN_SIDE``) and ``blocks`` =
    ``block_residual`` at every fraction.

    Args:
        quick: two shapes (32x32 with 16 channels, 56x56 with 64) at 10, 30 and 100 %, 3 rounds:
            about 4 s on 2 CPU cores.
        device: where to run.
        seed: of the weights, the inputs and the masks.
        rounds: timing rounds (``infra.benchmarking.interleaved``); 15, or 3 with ``quick``.
        min_seconds: the least time one timing lasts.
        shapes, fractions: instead of ``SWEEP_SHAPES`` / ``SWEEP_FRACTIONS`` (or their quick versions).
    Returns:
        ``{"config": ..., "rows": [...]}``, a row per shape and fraction.
    """
    device = _checks.device(device)
    shapes = (QUICK_SWEEP_SHAPES if quick else SWEEP_SHAPES) if shapes is None else shapes
    fractions = (QUICK_SWEEP_FRACTIONS if quick else SWEEP_FRACTIONS) if fractions is None else fractions
    rounds = (3 if quick else 15) if rounds is None else _checks.positive_int("rounds", rounds)
    _checks.non_negative("min_seconds", min_seconds)
    for fraction in fractions:
        if not 0 < fraction <= 1:
            raise ValueError(f"fractions must lie in (0, 1], got {fraction!r}")
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for batch, channels, side in shapes:
        torch.manual_seed(seed)
        unit = BasicUnit(channels, channels)
        with torch.no_grad():
            for bn in (unit.bn1, unit.bn2):                  # trained-looking statistics
                bn.running_mean.normal_(0, 0.2, generator=generator)
                bn.running_var.uniform_(0.5, 1.5, generator=generator)
        unit = unit.to(device).eval()
        u = torch.randn(batch, channels, side, side, generator=generator).to(device, memory_format=MEMORY_FORMAT)
        break_even = sparse.default_break_even(side, side)
        for fraction in fractions:
            mask = blob_masks(batch, side, side, fraction, generator).to(device)
            calls = {"dense": lambda: u + unit.residual(u) * mask[:, None],
                     "sparse": lambda: sparse.apply_unit(unit, u, mask, True),
                     "blocks": lambda: sparse.block_residual(unit, u, mask)}
            with torch.no_grad():
                times = interleaved(calls, rounds, device, min_seconds)
            sparse_ratio, sparse_spread = ratio(times["sparse"], times["dense"])
            blocks_ratio, blocks_spread = ratio(times["blocks"], times["dense"])
            computed = sparse.active_blocks(mask, sparse.BLOCK).float().mean().item()
            rows.append({"map_size": side, "channels": channels, "batch": batch, "block": sparse.BLOCK,
                         "active_fraction": (mask > 0).float().mean().item(), "computed_fraction": computed,
                         "path": "blocks" if sparse.uses_blocks(mask, sparse.BLOCK, break_even) else "dense",
                         "dense_seconds": min(times["dense"]),
                         "sparse_seconds": min(times["sparse"]),
                         "blocks_seconds": min(times["blocks"]),
                         "ratio": sparse_ratio, "spread": sparse_spread,
                         "blocks_ratio": blocks_ratio, "blocks_spread": blocks_spread})
    config = dict(quick=quick, device=str(device), threads=torch.get_num_threads(), rounds=rounds,
                  min_seconds=min_seconds, seed=seed, block=sparse.BLOCK, break_even=sparse.BREAK_EVEN,
                  min_side=sparse.MIN_SIDE, blob_scale=BLOB_SCALE, memory_format=str(MEMORY_FORMAT),
                  torch=torch.__version__,
                  malloc=allocator())
    if device.type == "cuda":
        config["gpu"] = torch.cuda.get_device_name(device)
    return {"config": config, "rows": rows}


def sweep_markdown(result: dict) -> str:
    """The sparsity sweep as a markdown table: times in ms, ratios to dense with their spread."""
    lines = ["| map | channels | batch | block | active | blocks computed | path | dense ms | sparse ms | "
             "sparse / dense (spread) | blocks / dense (spread) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(f"| {row['map_size']}x{row['map_size']} | {row['channels']} | {row['batch']} | {row['block']} | "
                     f"{row['active_fraction']:.2f} | {row['computed_fraction']:.2f} | {row['path']} | "
                     f"{1e3 * row['dense_seconds']:.2f} | {1e3 * row['sparse_seconds']:.2f} | "
                     f"{row['ratio']:.2f} ({row['spread']:.2f}) | "
                     f"{row['blocks_ratio']:.2f} ({row['blocks_spread']:.2f}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m adaptive.spatial.benchmark", description=__doc__.split("\n")[0])
    parser.add_argument("--sparsity-sweep", action="store_true",
                        help="time one residual unit, dense against sparse, over active fractions and map sizes")
    parser.add_argument("--depth", type=int, default=110)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CUDA only)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timing repeats (default 5; --quick 2), with --sparsity-sweep rounds (15; --quick 3)")
    parser.add_argument("--halting-bias", type=float, default=0.0,
                        help="bias of every halting unit (random 3x3 weights); -3 computes everything")
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--min-seconds", type=float, default=0.05,
                        help="with --sparsity-sweep: the least time one timing lasts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="ResNet-20, batch 32, 2 repeats; with --sparsity-sweep two shapes, three fractions")
    parser.add_argument("--json", default=None, help="also write the result to this file")
    args = parser.parse_args(argv)
    if args.sparsity_sweep:
        result = sparsity_sweep(args.quick, args.device, args.seed, args.repeats, args.min_seconds)
        table = sweep_markdown(result)
    else:
        if args.quick:
            args.depth, args.batch = 20, 32
        repeats = args.repeats if args.repeats is not None else 2 if args.quick else 5
        result = measure(args.depth, args.batch, args.device, args.bf16, tuple(args.methods), repeats,
                         args.halting_bias, args.seed)
        table = markdown(result)
    print(json.dumps(result["config"]))
    if args.json:
        write_report(result, args.json, table)
    else:
        print(table)
    return result


if __name__ == "__main__":
    steady_allocator("adaptive.spatial.benchmark")              # timings of the computation, not of page faults
    main()
