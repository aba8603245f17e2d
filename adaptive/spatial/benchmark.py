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

    python -m adaptive.spatial.benchmark --depth 110 --batch 128 --device cuda --bf16
    python -m adaptive.spatial.benchmark --quick          # a small CPU version
"""
from __future__ import annotations

import argparse
import json
import statistics

import torch

from .. import _checks
from ..infra.benchmarking import timed
from ..numerics import flush_denormals
from . import halting as spatial
from .resnet import cifar_resnet

METHODS = ("fixed", "act", "sact", "psact")
RECIPE_UPDATES = 100_000


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


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m adaptive.spatial.benchmark", description=__doc__.split("\n")[0])
    parser.add_argument("--depth", type=int, default=110)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CUDA only)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--halting-bias", type=float, default=0.0,
                        help="bias of every halting unit (random 3x3 weights); -3 computes everything")
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--quick", action="store_true", help="ResNet-20, batch 32, 2 repeats")
    parser.add_argument("--json", default=None, help="also write the result to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.depth, args.batch, args.repeats = 20, 32, 2
    result = measure(args.depth, args.batch, args.device, args.bf16, tuple(args.methods), args.repeats,
                     args.halting_bias)
    print(json.dumps(result["config"]))
    print(markdown(result))
    if args.json:
        with open(args.json, "w") as file:
            json.dump(result, file, indent=1)
    return result


if __name__ == "__main__":
    main()
