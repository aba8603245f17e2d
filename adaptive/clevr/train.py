"""Training MAC on CLEVR or mini-CLEVR with a fixed number of steps, ACT or DACT.

The recipe is the DACT authors' (Eyzaguirre & Soto 2020, their released MAC code):
Adam (lr 1e-4), batches of 64, gradient-norm clipping at 8, the learning rate halved when the
validation accuracy stops improving, and an exponential moving average (0.999) of the
weights, which is the model that is evaluated. The paper pre-trains a 12-step MAC without
gate for 10 epochs, then fine-tunes ACT, DACT and the gated MAC from it (``init_from``) with
fresh optimisers.

``train(config, checkpoint_dir)`` runs one ``MacConfig`` and returns its results row. Every
epoch it trains through ``adaptive.loop.run`` (the one loop: halting is never computed here),
evaluates the EMA weights with per-sample early exit, and writes ``checkpoint_dir/
checkpoint.pt`` atomically every ``checkpoint_every`` epochs and at the end
(``adaptive.infra.trainer.Trainer`` runs the epochs as its units, under its checkpoint policy).
Called again with the same configuration it resumes from there; ``epochs``, ``device`` and
``workers`` may differ (``RESUMABLE``), so a finished 10-epoch run continues to 30 epochs
when asked for 30 (the learning-rate schedule follows the validation accuracy, not the
planned length), and a checkpoint of more epochs than asked is refused. Any other
difference is refused with the list of differences. ``checkpoint_dir`` holds one run: give every run its own folder
(``MacConfig.name()`` is a readable one). A run killed in the middle of an epoch repeats that
epoch from its start.

Randomness: the model is initialised from ``seed``; the dropout masks of epoch e on rank r
come from a generator seeded with (seed, e, r) and the order of epoch e from (seed, e), so
nothing random carries from one epoch to the next and a resumed run repeats an
uninterrupted one exactly (same machine and thread count), with no generator state to save.

Launched by ``torchrun --nproc_per_node=N`` the same code trains data-parallel (see
``adaptive.infra.distributed`` and ``Unrolled``). CLI::

    python -m adaptive.clevr.train --data-root data/mini-clevr --method dact --tau 1e-3 \\
        --max-steps 12 --width 64 --embed-dim 64 --epochs 10 --checkpoint-dir build/clevr/dact
    torchrun --nproc_per_node=2 -m adaptive.clevr.train --data-root ... (same flags)
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from .. import _checks, loop
from ..infra import checkpoint, cli, distributed, pool, results, seeding
from ..infra.distributed import Context
from ..infra.trainer import Trainer
from ..numerics import flush_denormals
from . import dataset, gqa, questions
from .mac import MAC

RESUMABLE = ("epochs", "device", "workers")       # may change when a run is resumed
DATASETS = ("clevr", "gqa")
CHECKPOINT, RESULT = "checkpoint.pt", "result.json"


@dataclass(frozen=True)
class MacConfig:
    """Everything that defines one training run (recorded in every checkpoint and result).

    Attributes:
        data_root: dataset folder (mini-CLEVR or CLEVR v1.0 layout, with features; or GQA's).
        dataset: ``"clevr"`` (mini-CLEVR or CLEVR v1.0, ``load_data``) or ``"gqa"``
            (``adaptive.clevr.gqa.load_data``).
        method: one of ``adaptive.loop.METHODS`` (the paper compares ``"fixed"``, ``"act"`` and
            ``"dact"``); the gated MAC is ``"fixed"`` with ``gate``.
        max_steps: L, the most steps a question may take (``loop.Halting(method, max_steps)``).
        tau: the ponder penalty's weight (ACT, DACT).
        gate: MAC's memory gate.
        width, embed_dim, stem_stride, dropout: MAC's sizes and drop probabilities
            (``dropout`` None: the paper's, ``adaptive.clevr.mac.DROPOUT``).
        coordinates: the stem also sees each cell's position (``adaptive.clevr.mac.coordinate_maps``).
        model_steps: steps the model has parameters for (None: ``max_steps``); >= ``max_steps``.
        epochs: epochs to have trained when ``train`` returns.
        batch_size: questions per optimiser update, over all processes together.
        lr, clip, ema: Adam's learning rate, the gradient-norm limit, the EMA's decay.
        plateau_patience, plateau_factor: the learning rate is multiplied by the factor after
            ``plateau_patience`` + 1 epochs in a row without a new best validation accuracy
            (``ReduceLROnPlateau``, mode max; 1, 0.5: halved after two epochs without
            improvement. The authors' exact patience was not checked; 0 halves after any
            epoch that does not improve).
        seed: initialisation, data order and dropout.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; under torchrun ``cuda`` is ``cuda:LOCAL_RANK``.
        bf16: bfloat16 autocast of the model on CUDA. On the CPU it is ignored (the flag
            stays recorded; the results row's ``"autocast"`` says what was used).
        workers: DataLoader worker processes (0: read in the training process).
        init_from: a ``checkpoint.pt`` of this module whose EMA weights start the model
            (fine-tuning; optimiser, schedule and EMA start afresh).
        max_train_batches: stop each epoch after this many batches (quick runs); None: all.
    """

    data_root: str
    dataset: str = "clevr"
    method: str = "dact"
    max_steps: int = 12
    tau: float = 0.0
    gate: bool = False
    width: int = 512
    embed_dim: int = 300
    stem_stride: int = 1
    coordinates: bool = False
    model_steps: int | None = None
    dropout: dict | None = None
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-4
    clip: float = 8.0
    ema: float = 0.999
    plateau_patience: int = 1
    plateau_factor: float = 0.5
    seed: int = 0
    device: str = "cpu"
    bf16: bool = False
    workers: int = 0
    init_from: str | None = None
    max_train_batches: int | None = None

    def __post_init__(self):
        if not isinstance(self.data_root, (str, os.PathLike)):
            raise ValueError(f"data_root must be a path, got {self.data_root!r}")
        object.__setattr__(self, "data_root", str(self.data_root))
        if self.init_from is not None:
            if not isinstance(self.init_from, (str, os.PathLike)):
                raise ValueError(f"init_from must be a path or None, got {self.init_from!r}")
            object.__setattr__(self, "init_from", str(self.init_from))
        _checks.choice("dataset", self.dataset, DATASETS)
        _checks.choice("method", self.method, loop.METHODS)
        for name in ("max_steps", "width", "embed_dim", "stem_stride", "epochs", "batch_size"):
            _checks.positive_int(name, getattr(self, name))
        if self.model_steps is not None:
            _checks.positive_int("model_steps", self.model_steps)
            if self.max_steps > self.model_steps:
                raise ValueError(f"max_steps (L = {self.max_steps}) must be <= model_steps, the steps the model has "
                                 f"parameters for ({self.model_steps})")
        _checks.non_negative("tau", self.tau)
        _checks.positive("lr", self.lr)
        _checks.positive("clip", self.clip)
        if isinstance(self.ema, bool) or not isinstance(self.ema, (int, float)) or not 0 <= self.ema < 1:
            raise ValueError(f"ema (the moving average's decay) must be a number in [0, 1), got {self.ema!r}")
        _checks.open_unit("plateau_factor", self.plateau_factor)
        for name, value in (("plateau_patience", self.plateau_patience), ("workers", self.workers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        for name in ("gate", "coordinates", "bf16"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.max_train_batches is not None:
            _checks.positive_int("max_train_batches", self.max_train_batches)
        if self.dropout is not None:
            if not isinstance(self.dropout, dict) or not all(
                    isinstance(k, str) and isinstance(v, (int, float)) and 0 <= v < 1 for k, v in self.dropout.items()):
                raise ValueError(f"dropout must be None or a dict of drop probabilities in [0, 1), "
                                 f"e.g. {{'memory': 0.15}}; got {self.dropout!r}")
            object.__setattr__(self, "dropout", dict(self.dropout))
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError):
            raise ValueError(f"device must name a torch device ('cpu', 'cuda', 'cuda:1'), "
                             f"got {self.device!r}") from None

    def halting(self) -> loop.Halting:
        return loop.Halting(self.method, self.max_steps, tau=self.tau)

    def comparable(self) -> dict:
        """The settings a checkpoint must share to be resumed: all but ``RESUMABLE`` (and ``dataset``
        when it is CLEVR and ``coordinates`` when False, so that checkpoints made before they were
        added still resume)."""
        added = {"dataset": "clevr", "coordinates": False}                # fields added later, at their default
        return {key: value for key, value in asdict(self).items()
                if key not in RESUMABLE and not (key in added and value == added[key])}

    def name(self) -> str:
        """A readable folder name for this run, e.g. ``dact-tau0.001-L12-seed0``."""
        gate = "-gate" if self.gate else ""
        data = "gqa-" if self.dataset == "gqa" else ""
        return f"{data}{self.method}{gate}-tau{self.tau:g}-L{self.max_steps}-seed{self.seed}"


# ----------------------------------------------------------------------------------------------
# The model as data parallelism sees it


def _autocast(enabled: bool):
    return torch.autocast("cuda", dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


class Unrolled(nn.Module):
    """MAC unrolled by ``adaptive.loop.run`` for training: the module that
    ``DistributedDataParallel`` wraps.

    DDP synchronises the gradients of what runs inside its ``forward``; calling ``mac.step``
    outside it would skip its bookkeeping and leave the replicas to drift apart, so the whole
    loop runs here. ``forward`` returns (loss, task_loss, penalty, probs, steps, ponder).
    """

    def __init__(self, mac: MAC, halting: loop.Halting, bf16: bool = False):
        super().__init__()
        self.mac, self.halting, self.bf16 = mac, halting, bf16

    def forward(self, tokens, lengths, features, answers):
        with _autocast(self.bf16):
            state = self.mac.initial_state(tokens, lengths, features)
        out = loop.run(loop.bfloat16_step(self.mac.step, self.bf16), state, self.halting, target=answers)
        return out.loss, out.task_loss, out.penalty, out.probs, out.steps, out.ponder


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, parameter by parameter; buffers are copied."""
    for average, current in zip(ema.parameters(), model.parameters()):
        average.lerp_(current, 1.0 - decay)
    for average, current in zip(ema.buffers(), model.buffers()):
        average.copy_(current)


# ----------------------------------------------------------------------------------------------
# Data


def _how_to_get(root: Path) -> str:
    return (f"generate mini-CLEVR there with: python -m adaptive.clevr.minigen --out {root} --train 2000 "
            f"--val 500 --seed 0, or download CLEVR v1.0 and extract its features as data/README.md, "
            f"section CLEVR, says")


def load_data(config: MacConfig, context: Context = Context()):
    """(vocab, train set, val set) of ``config.data_root``; ValueError naming what is missing.

    The vocabulary comes from the train split (``questions.vocab_for`` writes
    ``<root>/vocab.json`` on first use: rank 0 writes it while the others wait).
    """
    root = Path(config.data_root)
    if not root.is_dir():
        raise ValueError(f"data_root {root} does not exist; {_how_to_get(root)}")
    vocab = distributed.main_first(context, lambda: questions.vocab_for(root))
    train_set = dataset.ClevrQuestions.from_root(root, "train", vocab)
    val_set = dataset.ClevrQuestions.from_root(root, "val", vocab)
    if train_set.features.shape[1:] != val_set.features.shape[1:]:
        raise ValueError(f"the features of {root} differ between splits: train rows are "
                         f"{train_set.features.shape[1:]}, val rows {val_set.features.shape[1:]}; "
                         f"extract both the same way")
    return vocab, train_set, val_set


def family_names(vocab: questions.Vocab) -> list[str]:
    """A name for every global family id: its template name, or ``<file>/<index>``."""
    names = [vocab.family_names.get(i) or f"{Path(f).stem}/{index}" for i, (f, index) in enumerate(vocab.families)]
    if len(set(names)) < len(names):                      # keep names unique as dict keys
        names = [f"{name} ({i})" for i, name in enumerate(names)]
    return names


# ----------------------------------------------------------------------------------------------
# Evaluation


@torch.no_grad()
def evaluate(mac: MAC, loader, halting: loop.Halting, vocab: questions.Vocab, context: Context = Context(),
             bf16: bool = False) -> dict:
    """Accuracy and steps with per-sample early exit, overall, per family and per type.

    Every rank evaluates its own shard; the sums are all-reduced, so every rank returns
    the same numbers. Families and types never seen in the data are left out.
    """
    device = next(mac.parameters()).device
    was_training = mac.training
    mac.eval()
    F, T, L = len(vocab.families), len(vocab.types), halting.max_steps
    count, correct, steps = (torch.zeros(1 + F + T, dtype=torch.float64, device=device) for _ in range(3))
    histogram = torch.zeros(L, dtype=torch.float64, device=device)
    for batch in loader:
        tokens, lengths, features, answers, families, qtypes = (t.to(device, non_blocking=True) for t in batch)
        with _autocast(bf16):
            state = mac.initial_state(tokens, lengths, features)
        out = loop.run(loop.bfloat16_step(mac.step, bf16), state, halting, training=False)
        hit = (out.probs.argmax(dim=1) == answers).double()                   # (b,)
        used = out.steps.double()                                             # (b,)
        for offset, ids, size in ((0, torch.zeros_like(families), 1), (1, families, F), (1 + F, qtypes, T)):
            known = ids >= 0                                                  # -1: unknown
            rows = ids[known] + offset
            count.index_add_(0, rows, torch.ones_like(used[known]))
            correct.index_add_(0, rows, hit[known])
            steps.index_add_(0, rows, used[known])
        histogram.index_add_(0, out.steps - 1, torch.ones_like(used))
    count, correct, steps, histogram = (distributed.all_reduce_sum(t, context).cpu()
                                        for t in (count, correct, steps, histogram))
    mac.train(was_training)
    if count[0] == 0:
        raise ValueError("the evaluation loader yielded no questions")

    def per(names, offset):
        seen = [(name, offset + i) for i, name in enumerate(names) if count[offset + i] > 0]
        return ({name: float(correct[row] / count[row]) for name, row in seen},
                {name: float(steps[row] / count[row]) for name, row in seen},
                {name: int(count[row]) for name, row in seen})

    family_accuracy, family_steps, family_count = per(family_names(vocab), 1)
    type_accuracy, type_steps, _ = per(vocab.types, 1 + F)
    return {"accuracy": float(correct[0] / count[0]), "mean_steps": float(steps[0] / count[0]),
            "questions": int(count[0]), "steps_histogram": [int(n) for n in histogram],
            "family_accuracy": family_accuracy, "family_steps": family_steps, "family_questions": family_count,
            "type_accuracy": type_accuracy, "type_steps": type_steps}


# ----------------------------------------------------------------------------------------------
# Training


def _initialise_from(mac: MAC, path: str, vocab: questions.Vocab) -> dict:
    """Load the EMA weights of the checkpoint at ``path`` into ``mac``; what was loaded.

    Parameters this model has and the checkpoint lacks (a gate, steps beyond the
    pre-trained ones) keep their fresh initialisation and are listed under ``"missing"``. A model
    with ``coordinates`` started from one without gets the stem's weights for the two coordinate
    channels at zero (listed under ``"widened"``), so that it starts as the checkpoint's model and
    learns to use the positions.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"init_from {path} does not exist; pre-train first, e.g. python -m "
                         f"adaptive.clevr.train --method fixed --max-steps 12 ... --checkpoint-dir DIR, "
                         f"then pass DIR/{CHECKPOINT}")
    payload = checkpoint.read(path)
    weights = payload.get("ema")
    if not isinstance(weights, dict):
        raise ValueError(f"init_from {path} is not a checkpoint of adaptive.clevr.train (it has no 'ema' weights)")
    saved_vocab = payload.get("vocab")
    if saved_vocab is not None and (saved_vocab["tokens"], saved_vocab["answers"]) != (vocab.tokens, vocab.answers):
        raise ValueError(f"init_from {path} was trained with another vocabulary (tokens or answers differ "
                         f"from {vocab.tokens[:3]}...); fine-tune on the data set it was trained on")
    own = mac.state_dict()
    widened = []
    if mac.coordinates and not payload.get("model_args", {}).get("coordinates", False):
        stem = "stem.0.weight"                                            # (d, C, 3, 3) -> (d, C + 2, 3, 3)
        if stem in weights and weights[stem].shape[1] + 2 == own[stem].shape[1]:
            weights = {**weights, stem: torch.cat([weights[stem], own[stem][:, -2:].new_zeros(
                own[stem][:, -2:].shape)], dim=1)}
            widened.append(stem)
    wrong = [f"{key}: checkpoint {tuple(weights[key].shape)}, this model {tuple(own[key].shape)}"
             for key in weights if key in own and weights[key].shape != own[key].shape]
    if wrong:
        raise ValueError(f"init_from {path} does not fit this model (width, embed_dim, stem_stride or the "
                         f"features differ):\n  " + "\n  ".join(wrong))
    missing, unexpected = mac.load_state_dict(weights, strict=False)
    return {"path": str(path), "epoch": payload.get("state", {}).get("epoch"), "missing": list(missing),
            "unexpected": list(unexpected), "widened": widened}


def _model_args(config: MacConfig, vocab: questions.Vocab, channels: int) -> dict:
    return {"vocab_size": len(vocab.tokens), "num_answers": len(vocab.answers), "feature_channels": channels,
            "width": config.width, "max_steps": config.model_steps or config.max_steps,
            "embed_dim": config.embed_dim, "gate": config.gate, "stem_stride": config.stem_stride,
            "coordinates": config.coordinates, "dropout": config.dropout}


def _train_epoch(net: nn.Module, mac: MAC, ema: MAC, optimizer, loader, config: MacConfig, context: Context,
                 epoch: int, progress: bool) -> dict:
    """One pass over this rank's shard of the epoch; the epoch's training means (all ranks)."""
    device = context.device
    torch.manual_seed(seeding.derive_seed(config.seed, epoch, context.rank))       # dropout of this epoch
    loader.sampler.set_epoch(epoch)
    mac.train()
    total = len(loader) if config.max_train_batches is None else min(len(loader), config.max_train_batches)
    sums = torch.zeros(7, dtype=torch.float64, device=device)  # questions, loss, task, penalty, correct, steps, ponder
    bar = tqdm(total=total, disable=not (progress and context.is_main), leave=False,
               desc=f"{config.name()} epoch {epoch + 1}/{config.epochs}")
    for index, batch in enumerate(loader):
        if index == total:
            break
        tokens, lengths, features, answers = (t.to(device, non_blocking=True) for t in batch[:4])
        loss, task_loss, penalty, probs, steps, ponder = net(tokens, lengths, features, answers)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = nn.utils.clip_grad_norm_(mac.parameters(), config.clip)     # of the synchronised gradients
        if not torch.isfinite(norm):
            raise FloatingPointError(
                f"{config.name()}: the loss or its gradient became {loss.item()} / {norm.item()} in epoch "
                f"{epoch + 1}, batch {index + 1}; lower lr (now {config.lr:g}) or tau (now {config.tau:g})")
        optimizer.step()
        update_ema(ema, mac, config.ema)
        size = len(answers)
        with torch.no_grad():
            values = [torch.tensor(float(size), device=device), loss * size, task_loss * size, penalty * size,
                      (probs.argmax(1) == answers).sum(), steps.sum(), ponder.sum()]
            sums += torch.stack([v.double() for v in values])
        if not bar.disable:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    n, loss, task, penalty, correct, steps, ponder = distributed.all_reduce_sum(sums, context).tolist()
    n = max(n, 1.0)
    return {"train_loss": loss / n, "train_task_loss": task / n, "train_penalty": penalty / n,
            "train_accuracy": correct / n, "train_steps": steps / n, "train_ponder": ponder / n}


def results_row(config: MacConfig, state: dict, evaluation: dict, context: Context, init: dict | None) -> dict:
    """The results row of a run whose trainer state (curve, epoch, seconds, world_size) and last
    evaluation are given: the book's required fields first."""
    curve = state["curve"]
    best = max(curve, key=lambda point: point["val_accuracy"]) if curve else None
    return {"method": config.method, "tau": config.tau, "penalty_name": config.halting().rule.penalty_name,
            "seed": config.seed,
            "accuracy": evaluation["accuracy"], "mean_steps": evaluation["mean_steps"], "max_steps": config.max_steps,
            "gate": config.gate, "epochs": state["epoch"],
            **{key: evaluation[key] for key in ("family_accuracy", "family_steps", "family_questions",
                                                "type_accuracy", "type_steps", "steps_histogram", "questions")},
            "best_accuracy": best["val_accuracy"] if best else None, "best_epoch": best["epoch"] if best else None,
            "curve": curve, "config": asdict(config), "train_seconds": state["seconds"],
            "world_size": state["world_size"],
            "autocast": "bf16" if config.bf16 and context.device.type == "cuda" else None, "init": init}


@flush_denormals()
def train(config: MacConfig, checkpoint_dir: str | os.PathLike | None = None, progress: bool = True,
          checkpoint_every: int = 1) -> dict:
    """Train (or resume, or just report) one configuration; return its results row.

    The row: ``method, tau, seed, accuracy, mean_steps, max_steps`` (L), ``gate``,
    ``family_accuracy`` / ``family_steps`` (by family name), ``type_accuracy`` /
    ``type_steps``, ``steps_histogram``, ``curve`` (one entry per epoch), ``config``,
    ``train_seconds`` and more; accuracy and steps are the EMA model's on the val split at
    the last epoch, with early exit. With ``checkpoint_dir``, rank 0 writes
    ``checkpoint.pt`` after every ``checkpoint_every`` epochs and at the end, and ``result.json``
    (``adaptive.infra.results`` format) at the end.
    """
    if not isinstance(config, MacConfig):
        raise ValueError(f"config must be a MacConfig, got {type(config).__name__}")
    _checks.positive_int("checkpoint_every", checkpoint_every)
    context = distributed.setup(config.device)
    try:
        return _train(config, Path(checkpoint_dir) if checkpoint_dir is not None else None, progress,
                      checkpoint_every, context)
    finally:
        distributed.teardown(context)


def _train(config: MacConfig, folder: Path | None, progress: bool, checkpoint_every: int, context: Context) -> dict:
    device = context.device
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device is {config.device!r} but torch sees no CUDA device; use device='cpu'")
    if config.batch_size % context.world:
        raise ValueError(f"batch_size ({config.batch_size}) must be a multiple of the number of processes "
                         f"({context.world}): each takes batch_size / {context.world} questions per update")
    bf16 = config.bf16 and device.type == "cuda"
    vocab, train_set, val_set = (gqa.load_data if config.dataset == "gqa" else load_data)(config, context)
    trainer = Trainer(folder / CHECKPOINT if folder is not None else None, config.comparable(),
                      total=config.epochs, unit="epoch", eval_every=1, checkpoint_every=checkpoint_every,
                      is_main=context.is_main, progress=progress, description=config.name(),
                      extra_state={"world_size": context.world, "evaluation": None})
    saved = trainer.saved

    torch.manual_seed(config.seed)
    model_args = _model_args(config, vocab, train_set.features.shape[1])
    mac = MAC(**model_args).to(device)
    if config.max_steps > mac.max_steps:
        raise ValueError(f"max_steps (L = {config.max_steps}) exceeds the model's max_steps ({mac.max_steps})")
    init = None
    if saved is None and config.init_from is not None:
        init = _initialise_from(mac, config.init_from, vocab)
    ema = copy.deepcopy(mac).requires_grad_(False).eval()
    optimizer = torch.optim.Adam(mac.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=config.plateau_factor,
                                                           patience=config.plateau_patience)
    if saved is not None:
        mac.load_state_dict(saved["model"])
        ema.load_state_dict(saved["ema"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        init = saved.get("init")

    net = Unrolled(mac, config.halting(), bf16)
    if context.distributed:
        # Some parameters get no gradient in some steps: ACT stops once the whole batch has
        # halted (the later steps' question projections go unused, and differently on each
        # rank), "fixed" never uses the halting unit, L < model_steps never uses the last
        # projections. DDP must then search the graph for them every step; a rule that uses
        # every step (DACT, PACT, PonderNet) with L = model_steps uses everything and skips
        # that search. (A wrong guess is loud: DDP raises at the next step, it never averages wrongly.)
        unused = not config.halting().rule.uses_every_step or config.max_steps < mac.max_steps
        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None,
                                      find_unused_parameters=unused)
    per_rank = config.batch_size // context.world
    pin = device.type == "cuda"
    sampler = dataset.ShardedEpochShuffle(len(train_set), config.seed, context.rank, context.world)
    train_loader = DataLoader(train_set, batch_size=per_rank, sampler=sampler, collate_fn=dataset.collate,
                              num_workers=config.workers, pin_memory=pin)
    val_rows = distributed.shard(len(val_set), context.rank, context.world)
    val_loader = dataset.make_loader(Subset(val_set, val_rows), batch_size=per_rank, shuffle=False,
                                     num_workers=config.workers)

    def train_unit(epoch: int) -> dict:
        """One epoch; the curve point's training half (the learning rate it used, its means)."""
        lr = optimizer.param_groups[0]["lr"]
        return {"lr": lr, **_train_epoch(net, mac, ema, optimizer, train_loader, config, context, epoch, progress)}

    def evaluate_epoch(point: dict) -> dict:
        """Evaluate the EMA model, let the schedule see its accuracy; the whole curve point."""
        evaluation = evaluate(ema, val_loader, config.halting(), vocab, context, bf16)
        distributed.check_in_sync(mac, context)
        scheduler.step(evaluation["accuracy"])
        trainer.state.update(evaluation=evaluation, world_size=context.world)
        point = {**point, "val_accuracy": evaluation["accuracy"], "val_mean_steps": evaluation["mean_steps"],
                 "seconds": trainer.elapsed()}
        if progress and context.is_main:
            tqdm.write(f"{config.name()} epoch {trainer.done}: train loss {point['train_loss']:.4f}, "
                       f"val accuracy {point['val_accuracy']:.4f}, val steps {point['val_mean_steps']:.2f}")
        return point

    def payload() -> dict:
        return {"run": asdict(config), "model": mac.state_dict(), "ema": ema.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "model_args": model_args, "vocab": vocab.to_json(), "init": init}

    state = trainer.run(train_unit, evaluate_epoch, payload)
    if state["evaluation"] is None:                  # epochs >= 1, so only a checkpoint from elsewhere
        raise ValueError(f"the checkpoint {trainer.path} holds no evaluation; remove it and train again: "
                         f"rm {shlex.quote(str(trainer.path))}")
    row = results_row(config, state, state["evaluation"], context, init)
    if folder is not None and context.is_main:
        results.write(folder / RESULT, asdict(config), [row])
    return row


def train_many(runs: list[tuple[MacConfig, str | os.PathLike]], workers: int = 1) -> list[dict]:
    """Train several (config, checkpoint_dir) pairs on the CPU, ``workers`` processes at a time
    (``adaptive.infra.pool.train_many``).

    Rows come back in the order of ``runs``; finished runs are read from their checkpoints.
    """
    return pool.train_many(train, runs, workers)


def load_trained(path: str | os.PathLike, device: str = "cpu") -> tuple[MAC, MacConfig, questions.Vocab]:
    """The EMA model of a checkpoint (in eval mode), its configuration and vocabulary."""
    payload = checkpoint.read(path)
    if "ema" not in payload or "model_args" not in payload:
        raise ValueError(f"{path} is not a checkpoint of adaptive.clevr.train")
    mac = MAC(**payload["model_args"])
    mac.load_state_dict(payload["ema"])
    vocab_json = payload["vocab"]
    vocab = questions.Vocab(vocab_json["tokens"], vocab_json["answers"], vocab_json["families"],
                            vocab_json["types"], vocab_json.get("family_names", {}))
    return mac.to(device).eval(), MacConfig(**payload["run"]), vocab


# ----------------------------------------------------------------------------------------------
# Command line

_HELP = {
    "data_root": "dataset folder, e.g. data/mini-clevr, data/CLEVR_v1.0 or data/gqa",
    "dataset": "clevr (mini-CLEVR or CLEVR v1.0) or gqa (adaptive.clevr.gqa)",
    "method": "the halting method; the paper compares fixed, act and dact (the gated MAC: fixed with --gate)",
    "max_steps": "L, the most reasoning steps", "tau": "ponder penalty weight",
    "model_steps": "steps the model has parameters for (default: --max-steps)",
    "dropout": 'JSON drop probabilities, e.g. \'{"memory": 0.15}\' (default: the paper\'s)',
    "batch_size": "questions per optimiser update over all processes",
    "coordinates": "give the stem each cell's position as two more channels",
    "init_from": "checkpoint.pt whose EMA weights start the model (fine-tuning)",
    "max_train_batches": "stop each epoch after this many batches (quick runs)",
    "bf16": "bfloat16 autocast on CUDA (ignored on the CPU)",
}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m adaptive.clevr.train",
                                     description="Train MAC (fixed steps, ACT or DACT) on (mini-)CLEVR or GQA; "
                                                 "under torchrun, data-parallel.")
    cli.add_config_arguments(parser, MacConfig, help_texts=_HELP,
                             choices={"method": loop.METHODS, "dataset": DATASETS}, parsers={"dropout": json.loads})
    parser.add_argument("--checkpoint-dir", default=None,
                        help="folder of this run's checkpoint.pt and result.json (default: build/clevr/<name>)")
    parser.add_argument("--checkpoint-every", type=int, default=1,
                        help="epochs between checkpoints; the end is always saved (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = vars(parser.parse_args(argv))
    checkpoint_dir, threads, quiet = args["checkpoint_dir"], args["threads"], args["quiet"]
    config = cli.config_from(MacConfig, args)
    if threads is not None:
        torch.set_num_threads(_checks.positive_int("threads", threads))
    folder = Path(checkpoint_dir) if checkpoint_dir else Path("build") / "clevr" / config.name()
    row = train(config, folder, progress=not quiet, checkpoint_every=args["checkpoint_every"])
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{config.name()}: accuracy {row['accuracy']:.4f}, mean steps {row['mean_steps']:.2f} of "
              f"{row['max_steps']}, {row['epochs']} epochs in {row['train_seconds']:.0f} s "
              f"({row['world_size']} process(es)); wrote {folder / RESULT}")
    return row


if __name__ == "__main__":
    main()
