"""Training fixed (plain), ACT, SACT and PSACT ResNets: generated objects on a CPU, CIFAR-10 on GPUs.

The recipe is the CIFAR recipe of the SACT authors' code: SGD with momentum 0.9, weight
decay 2e-4, batch 128, the learning rate divided by 10 at 60 %, 75 % and 90 % of the
optimiser updates (60k/75k/90k of 100k), pad-4 random crops and horizontal flips on CIFAR-10. PSACT trained
with REINFORCE uses Adam at 1e-3 with the same schedule and an exponential-moving-average
reward baseline with decay 0.99 (PSACT sec. 6). The generated objects (``adaptive.spatial.objects``)
get flips only: a crop would move the objects away from their masks.

A run is a ``SpatialConfig``; ``train(config, checkpoint_dir)`` writes an atomic checkpoint
every ``checkpoint_every`` updates and at the end, resumes from it (a run stopped after update u
continues with update u + 1, in the middle of an epoch too, with the same batches, since the
batches of an epoch depend only on (seed, epoch), and the same draws, since those of an update
depend only on (seed, rank, update)), and refuses a checkpoint made with another
configuration, listing the differences (``adaptive.infra.trainer.Trainer`` runs the updates as
its units, under its checkpoint policy). The configuration a checkpoint must match leaves out
``updates`` (``RESUMABLE``), but the learning rate drops at fractions of ``updates``: a run is
extended to more updates only where the updates it has done keep their learning rates (with
``milestones=()``, a constant rate, always; with the recipe's, only a run stopped before its
first drop at 60 %), since only then is the extended run the longer run; otherwise the
checkpoint is refused, naming both schedules. Under
``torchrun --nproc_per_node=N -m adaptive.spatial.train ...`` every rank takes its share of
each batch and DistributedDataParallel averages the gradients (NCCL on GPUs, Gloo on the CPU).
On CUDA with ``bf16=True`` the network runs under bfloat16 autocast; the halting rules run in
float32 (the halting units' outputs are cast back before ``act`` and ``pact`` see them).
"""
from __future__ import annotations

import argparse
import json
import shlex
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .. import _checks
from ..infra import checkpoint, cli, distributed, pool, results, seeding
from ..infra.trainer import Trainer
from ..numerics import flush_denormals
from . import cifar
from . import halting as spatial
from . import objects as spatial_data
from .resnet import cifar_resnet, cifar_units

DATASETS = ("objects", "cifar10")
OPTIMIZERS = ("sgd", "adam")
CHECKPOINT = "checkpoint.pt"
RESULT = "result.json"
RESUMABLE = ("updates",)                # may change when a run is resumed, as far as the schedule allows


@dataclass(frozen=True)
class SpatialConfig:
    """Everything that defines one training run (recorded in every result).

    ``updates`` counts optimiser updates; ``milestones`` are the fractions of ``updates``
    at which the learning rate is divided by 10. ``eval_modes`` lists the halting rules the
    test set is evaluated with at every evaluation (empty: the method's default rule only).
    """

    method: str = "sact"
    tau: float = 0.01
    seed: int = 0
    dataset: str = "objects"
    data_dir: str = "data/cifar10"
    depth: int = 20
    train_size: int = 6000            # generated objects only
    test_size: int = 1200             # generated objects only
    batch_size: int = 128
    updates: int = 100_000
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 2e-4
    milestones: tuple[float, ...] = (0.6, 0.75, 0.9)
    eps: float = 0.01
    temperature: float = 1.0
    delta: float = 0.01
    patch: int = 1
    estimator: str = "relaxed"
    baseline_decay: float = 0.99
    eval_every: int = 1000
    eval_modes: tuple[str, ...] = ()
    bf16: bool = False
    init_from: str | None = None      # a checkpoint of ``train``: start from its ResNet weights

    def __post_init__(self):
        self.halting()                                  # method, tau, eps, temperature, ...
        _checks.choice("dataset", self.dataset, DATASETS)
        cifar_units(self.depth)                         # depth = 6n + 2
        for name in ("train_size", "test_size", "batch_size", "updates", "eval_every"):
            _checks.positive_int(name, getattr(self, name))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        _checks.choice("optimizer", self.optimizer, OPTIMIZERS)
        _checks.positive("lr", self.lr)
        _checks.non_negative("momentum", self.momentum)
        _checks.non_negative("weight_decay", self.weight_decay)
        _checks.open_unit("baseline_decay", self.baseline_decay)
        if any(not isinstance(m, (int, float)) or not 0 < m < 1 for m in self.milestones) \
                or list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"milestones must be increasing fractions of the updates in (0, 1), "
                             f"got {self.milestones!r}")
        for mode in self.eval_modes:
            self.halting(mode)
        if self.init_from is not None and not Path(self.init_from).is_file():
            raise ValueError(f"init_from must be a checkpoint file written by adaptive.spatial.train, "
                             f"got {self.init_from!r}, which does not exist")

    def halting(self, eval_mode: str | None = None) -> spatial.SpatialHalting:
        return spatial.SpatialHalting(self.method, self.tau, self.eps, self.temperature, self.delta,
                                      self.patch, self.estimator, eval_mode)

    @property
    def num_classes(self) -> int:
        return spatial_data.NUM_CLASSES if self.dataset == "objects" else 10

    @property
    def modes(self) -> tuple[str, ...]:
        if self.method == "fixed":
            return ("fixed",)
        return self.eval_modes or (self.halting().default_eval_mode,)

    def milestone_updates(self) -> tuple[int, ...]:
        """The updates (0-based) from which the learning rate is divided by 10 once more."""
        return tuple(round(m * self.updates) for m in self.milestones)

    def learning_rate(self, update: int) -> float:
        """The learning rate of update ``update`` (0-based): ``lr`` divided by 10 at each milestone passed."""
        passed = sum(update >= milestone for milestone in self.milestone_updates())
        return self.lr * 0.1 ** passed

    def as_dict(self) -> dict:
        return asdict(self)

    def comparable(self) -> dict:
        """The settings a checkpoint must share to be resumed: all but ``RESUMABLE``."""
        return {key: value for key, value in asdict(self).items() if key not in RESUMABLE}


# ----------------------------------------------------------------------------- data

class Data:
    """Normalised train and test tensors of one data set, and the object masks if any."""

    def __init__(self, config: SpatialConfig):
        if config.dataset == "objects":
            train = spatial_data.generate(config.train_size, seed=config.seed)
            test = spatial_data.generate(config.test_size, seed=10_000 + config.seed)
            self.mean, self.std = cifar.channel_stats(train.images)
            self.train_images, self.train_labels = train.images, train.labels
            self.test_images, self.test_labels, self.test_masks = test.images, test.labels, test.masks
        else:
            images, labels = cifar.load_cifar10(config.data_dir, "train")
            test_images, test_labels = cifar.load_cifar10(config.data_dir, "test")
            self.mean, self.std = torch.tensor(cifar.CIFAR10_MEAN), torch.tensor(cifar.CIFAR10_STD)
            self.train_images, self.train_labels = images, labels                   # uint8
            self.test_images, self.test_labels, self.test_masks = test_images, test_labels, None
        self.crop = config.dataset == "cifar10"

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return cifar.normalize(images, self.mean, self.std)

    def train_transform(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Flip (objects) or pad-4 crop and flip (CIFAR-10), then normalise."""
        if self.crop:
            images = cifar.augment(images, generator)
        else:
            flip = torch.rand(images.shape[0], generator=generator) < 0.5
            images = torch.where(flip[:, None, None, None], images.flip(3), images)
        return self.normalize(images)


def build(config: SpatialConfig) -> spatial.AdaptiveResNet:
    """The network of a configuration, seeded by ``config.seed``."""
    torch.manual_seed(config.seed)
    return spatial.AdaptiveResNet(cifar_resnet(config.depth, config.num_classes), config.halting())


# ----------------------------------------------------------------------------- evaluation

@torch.no_grad()
def evaluate(model: spatial.AdaptiveResNet, images: torch.Tensor, labels: torch.Tensor, mode: str | None,
             *, normalize=None, masks: torch.Tensor | None = None, sparse: bool = False,
             batch_size: int = 500, seed: int = 0, keep_maps: bool = False) -> dict:
    """Accuracy, FLOPs and units of ``model`` on a test set, halting with ``mode``.

    Args:
        mode: a halting rule of ``spatial.EVAL_MODES`` (None or "fixed": the default).
        normalize: applied to each batch of images.
        masks: (N, 32, 32) object masks: adds ``coverage_auc``/``coverage_ratio`` per block.
        sparse: compute only active positions.
        keep_maps: return the per-block ponder maps (CPU tensors) under ``"ponder_maps"``.
    Returns:
        dict with accuracy, loss, flops (mean per image), flops_ratio (to the plain network),
        mean_units (per position, summed over blocks), max_units and, as asked, coverage and maps.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    mode = None if mode in (None, "fixed") else mode
    correct, loss, flops_sum, units, max_units, maps = 0, 0.0, 0.0, 0.0, 0.0, []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(device)
        y = labels[start:start + batch_size].to(device)
        out = model(normalize(x) if normalize else x, mode=mode, sparse=sparse, generator=generator)
        correct += (out.logits.argmax(dim=1) == y).sum().item()
        loss += F.cross_entropy(out.logits.float(), y, reduction="sum").item()
        flops_sum += out.flops.sum().item()
        if out.blocks:
            per_image = out.units
            units += per_image.sum().item()
            max_units = max(max_units, per_image.max().item())
            maps.append([block.ponder.float().cpu() for block in out.blocks])
    n = len(images)
    row = {"accuracy": correct / n, "loss": loss / n, "flops": flops_sum / n,
           "flops_ratio": flops_sum / n / model.plain_flops}
    depth_units = sum(len(block) for block in model.resnet.blocks)
    row["mean_units"] = units / n if maps else float(depth_units)
    row["max_units"] = max_units if maps else float(depth_units)
    if maps:
        per_block = [torch.cat(block_maps) for block_maps in zip(*maps)]
        if masks is not None:
            coverage = [spatial_data.object_coverage(m, masks[:n].cpu()) for m in per_block]
            row["coverage_auc"] = [c.auc for c in coverage]
            row["coverage_ratio"] = [c.ratio for c in coverage]
        if keep_maps:
            row["ponder_maps"] = per_block
    model.train(was_training)
    return row


# ----------------------------------------------------------------------------- training

class RewardBaseline:
    """The REINFORCE baseline c: an exponential moving average of the reward log p(y | z, x)."""

    def __init__(self, decay: float):
        self.decay, self.value = decay, None

    def update(self, reward: float) -> float:
        """Return the baseline to use for this batch, then move it towards ``reward``."""
        baseline = reward if self.value is None else self.value
        self.value = reward if self.value is None else self.decay * self.value + (1 - self.decay) * reward
        return baseline


def reward(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """REINFORCE's reward ``log p(y | z, x)`` per image, (B,), without gradient."""
    return -F.cross_entropy(logits.float(), target, reduction="none").detach()


def objective(out: spatial.SpatialOutput, target: torch.Tensor, baseline: float | None) -> torch.Tensor:
    """The loss whose gradient the optimiser follows.

    Relaxed, ACT and SACT training: ``out.loss`` (task loss + penalty). REINFORCE (PSACT eq. 25):
    the task loss for the network, plus the score-function surrogate
    ``-(log p(y | z, x) - c) log q(z | x)`` for the halting units, plus the penalty
    ``tau sum_k N_k`` whose gradient is the analytic one of eq. 23.
    """
    if baseline is None:
        return out.loss
    log_q = sum(block.log_q for block in out.blocks)                               # (B,)
    return out.loss - ((reward(out.logits, target) - baseline) * log_q).mean()


def _optimizer(config: SpatialConfig, model: nn.Module) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay)


def _halting_to_float(model: spatial.AdaptiveResNet) -> None:
    """Under bf16 autocast, let the halting units return float32 logits."""
    for block in getattr(model, "halting_units", []):
        for unit in block:
            unit.register_forward_hook(lambda module, inputs, output: output.float())


def train(config: SpatialConfig, checkpoint_dir: str | Path | None = None, device: str = "cpu",
          progress: bool = True, checkpoint_every: int = 100) -> dict:
    """Train one configuration; return its results row (also written to ``result.json``).

    The row holds ``results.REQUIRED`` (accuracy and mean_steps of the method's default
    rule; steps are residual units per position summed over blocks, so ``max_steps`` is
    the most a position may take, every unit of every block, and ``observed_max_steps``
    the most one took on the test set), the FLOPs, one evaluation per rule of
    ``config.modes``, the learning curve and the config. With ``checkpoint_dir``, rank 0 writes
    ``checkpoint.pt`` every ``checkpoint_every`` updates and at the end.
    """
    if not isinstance(config, SpatialConfig):
        raise ValueError(f"config must be a SpatialConfig, got {type(config).__name__}")
    _checks.positive_int("checkpoint_every", checkpoint_every)
    context = distributed.setup(device)
    try:
        with flush_denormals():
            return _train(config, None if checkpoint_dir is None else Path(checkpoint_dir), context, progress,
                          checkpoint_every)
    finally:
        distributed.teardown(context)


def _check_same_schedule(config: SpatialConfig, saved: dict, done: int, path: Path) -> None:
    """Refuse to extend the run saved at ``path`` if its ``done`` updates had other learning rates.

    A milestone at or beyond ``done`` has not acted yet, so only the milestones before it must agree.
    """
    planned = saved["run"]["updates"]
    before = replace(config, updates=planned).milestone_updates()
    if [min(m, done) for m in before] != [min(m, done) for m in config.milestone_updates()]:
        raise ValueError(f"refusing to extend {path} to {config.updates} updates: its {done} updates were "
                         f"trained for a run of {planned}, whose learning rate drops at updates {before}, "
                         f"while a run of {config.updates} drops it at updates {config.milestone_updates()}; "
                         f"extended, it would not be the longer run. Train the longer run in another "
                         f"checkpoint directory, or start it afresh here: rm {shlex.quote(str(path))}")


def _train(config: SpatialConfig, folder: Path | None, context, progress: bool, checkpoint_every: int) -> dict:
    device = context.device
    if config.batch_size % context.world:
        raise ValueError(f"batch_size = {config.batch_size} must be divisible by the {context.world} processes")
    trainer = Trainer(None if folder is None else folder / CHECKPOINT, config.comparable(), total=config.updates,
                      eval_every=config.eval_every, checkpoint_every=checkpoint_every, is_main=context.is_main,
                      progress=progress, description=f"{config.method} tau={config.tau:g}")
    if trainer.saved is not None:                   # refused before the data are made
        _check_same_schedule(config, trainer.saved, trainer.done, trainer.path)
    data = Data(config)
    model = build(config).to(device)
    if config.bf16 and device.type == "cuda":
        _halting_to_float(model)
    if config.init_from is not None:
        _initialise_from(model, config.init_from)
    optimizer = _optimizer(config, model)
    baseline = RewardBaseline(config.baseline_decay) if config.estimator == "reinforce" else None
    if trainer.saved is not None:
        model.load_state_dict(trainer.saved["model"])
        optimizer.load_state_dict(trainer.saved["optimizer"])
        if baseline is not None:
            baseline.value = trainer.saved["baseline"]
    net = model
    if context.distributed:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    batches = cifar.Batches(data.train_images, data.train_labels, batch_size=config.batch_size,
                            seed=config.seed, drop_last=True, transform=data.train_transform)
    per_epoch = len(batches)
    generator = torch.Generator(device=device)     # re-seeded every update: resumes draw the same samples
    stream = batches.stream(start_epoch=trainer.done // per_epoch)
    for _ in range(trainer.done % per_epoch):       # the batches already used this epoch
        next(stream)

    def test(mode):
        return evaluate(model, data.test_images, data.test_labels, mode, normalize=data.normalize,
                        masks=data.test_masks, seed=config.seed)

    def train_unit(update: int) -> spatial.SpatialOutput:
        """Optimiser update ``update`` (0-based) on this rank's share of the next batch; its output."""
        images, labels = next(stream)
        share = slice(context.rank * config.batch_size // context.world,
                      (context.rank + 1) * config.batch_size // context.world)
        images, labels = images[share].to(device), labels[share].to(device)
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate(update)
        generator.manual_seed(seeding.derive_seed(config.seed, context.rank, update))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16 and device.type == "cuda"):
            out = net(images, labels, generator=generator)
            reward_baseline = None
            if baseline is not None:
                reward_baseline = baseline.update(reward(out.logits, labels).mean().item())
            loss = objective(out, labels, reward_baseline)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss.item()} at update {update}; lower lr "
                                     f"(now {config.learning_rate(update)}) or tau")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return out

    def evaluate_point(out: spatial.SpatialOutput) -> dict:
        """The last update's training loss and learning rate, and the test set under every mode."""
        point = {"train_loss": out.task_loss.item(), "lr": config.learning_rate(trainer.done - 1)}
        for mode in config.modes:
            row = test(mode)
            point[mode] = {key: row[key] for key in ("accuracy", "loss", "flops_ratio", "mean_units")}
        return point

    def payload() -> dict:
        return {"run": config.as_dict(), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "baseline": None if baseline is None else baseline.value}

    model.train()
    state = trainer.run(train_unit, evaluate_point, payload)
    evaluations = {mode: test(mode) for mode in config.modes}
    main = evaluations[config.modes[0]]
    row = {"method": config.method, "tau": config.tau, "penalty_name": config.halting().penalty_name,
           "seed": config.seed,
           "accuracy": main["accuracy"], "mean_steps": main["mean_units"],
           "max_steps": sum(len(block) for block in model.resnet.blocks), "observed_max_steps": main["max_units"],
           "flops": main["flops"], "flops_ratio": main["flops_ratio"], "eval_mode": config.modes[0],
           "evaluations": evaluations, "curve": state["curve"], "train_seconds": state["seconds"],
           "world_size": context.world, "config": config.as_dict()}
    if folder is not None and context.is_main:
        results.write(folder / RESULT, config.as_dict(), [row])
    return row


def train_many(runs: list[tuple[SpatialConfig, str | Path]], workers: int = 1) -> list[dict]:
    """Train several (config, checkpoint_dir) pairs on the CPU, ``workers`` processes at a time
    (``adaptive.infra.pool.train_many``).

    Rows come back in the order of ``runs``; finished runs are read from their checkpoints.
    """
    return pool.train_many(train, runs, workers)


def _initialise_from(model: spatial.AdaptiveResNet, path: str) -> None:
    """Copy the ResNet weights of a trained checkpoint (halting units stay as initialised).

    This is the pre-train then fine-tune recipe: one plain network, trained once, is the
    starting point of every adaptive variant.
    """
    weights = checkpoint.read(path).get("model")
    if not isinstance(weights, dict):
        raise ValueError(f"init_from = {path} is not a checkpoint of adaptive.spatial.train (it has no 'model' "
                         f"weights)")
    resnet = {key[len("resnet."):]: value for key, value in weights.items() if key.startswith("resnet.")}
    try:
        model.resnet.load_state_dict(resnet)
    except RuntimeError as error:
        raise ValueError(f"init_from = {path} holds a ResNet that does not fit this model (depth, "
                         f"classes): {str(error).splitlines()[0]}") from None


def gradient_variance(model: spatial.AdaptiveResNet, images: torch.Tensor, labels: torch.Tensor,
                      estimator: str, samples: int = 16, seed: int = 0) -> float:
    """Variance of the gradient estimate for the halting units, over draws of the latent variables.

    The PSACT paper's Fig. 4 measurement, at fixed parameters and a fixed batch: the gradient
    of ``objective`` with respect to every halting-unit parameter is estimated ``samples``
    times with fresh samples of the halting variables, by the relaxed model
    (reparameterised) or by REINFORCE (discrete samples, the baseline set to the mean reward
    of 4 extra draws, as a converged moving average would be). Returns the sum over
    parameters of the per-coordinate variance (the trace of the covariance). Batch norms use
    their running statistics, so nothing in the model changes.
    """
    _checks.choice("estimator", estimator, spatial.ESTIMATORS)
    _checks.positive_int("samples", samples)
    if samples < 2:
        raise ValueError(f"samples must be >= 2 to estimate a variance, got {samples}")
    if model.halting.method != "psact":
        raise ValueError(f"gradient_variance compares PSACT's estimators; the model runs {model.halting.method!r}")
    was_training = model.training
    model.eval()
    params = [p for p in model.halting_units.parameters()]
    mode = "relaxed" if estimator == "relaxed" else "discrete"
    generator = torch.Generator(device=images.device).manual_seed(seed)
    baseline = None
    if estimator == "reinforce":
        with torch.no_grad():
            rewards = [reward(model(images, mode=mode, generator=generator).logits, labels).mean().item()
                       for _ in range(4)]
        baseline = sum(rewards) / len(rewards)
    grads = []
    for _ in range(samples):
        out = model(images, labels, mode=mode, generator=generator)
        loss = objective(out, labels, baseline)
        grads.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)]))
    model.train(was_training)
    return torch.stack(grads).double().var(dim=0).sum().item()


def load_trained(path: str | Path, device: str = "cpu") -> tuple[spatial.AdaptiveResNet, SpatialConfig]:
    """The model and configuration of a checkpoint written by ``train``, in evaluation mode."""
    payload = checkpoint.read(path)
    if "run" not in payload or "model" not in payload:
        raise ValueError(f"{path} is not a checkpoint of adaptive.spatial.train")
    config = cli.config_from(SpatialConfig, payload["run"])
    model = build(config).to(device)
    model.load_state_dict(payload["model"])
    return model.eval(), config


# ----------------------------------------------------------------------------- command line

_HELP = {
    "method": "fixed (the plain network), act, sact or psact", "tau": "ponder penalty weight",
    "updates": "optimiser updates", "milestones": "fractions of the updates at which lr is divided by 10",
    "eval_every": "updates between evaluations", "eval_modes": "halting rules to evaluate with",
    "patch": "n: one latent variable per n x n positions (PSACT)",
    "init_from": "checkpoint.pt whose ResNet weights start the model (fine-tuning)",
    "bf16": "bfloat16 autocast on CUDA",
}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m adaptive.spatial.train",
                                     description="Train a fixed, ACT, SACT or PSACT ResNet (see the module docstring).")
    cli.add_config_arguments(parser, SpatialConfig, help_texts=_HELP,
                             choices={"method": spatial.METHODS, "dataset": DATASETS, "optimizer": OPTIMIZERS,
                                      "estimator": spatial.ESTIMATORS, "eval_modes": spatial.EVAL_MODES})
    parser.add_argument("--checkpoint-dir", default=None, help="where checkpoint.pt and result.json go")
    parser.add_argument("--checkpoint-every", type=int, default=100,
                        help="updates between checkpoints; the end is always saved (default 100)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = vars(parser.parse_args(argv))
    folder, device, quiet = args["checkpoint_dir"], args["device"], args["quiet"]
    config = cli.config_from(SpatialConfig, args)
    row = train(config, folder, device=device, progress=not quiet, checkpoint_every=args["checkpoint_every"])
    summary = {key: row[key] for key in ("method", "tau", "accuracy", "mean_steps", "flops_ratio")}
    print(json.dumps(summary))
    return row


if __name__ == "__main__":
    main()
