"""Chapter 5's pretrained MAC: the long pre-training every variant is fine-tuned from.

The paper pre-trains a 12-step MAC without gate, then fine-tunes the shorter MACs, the gated
MAC, MAC+ACT and MAC+DACT from it. On two CPU cores that pre-training takes longer than a
default build can afford, so it is trained once by the package's own trainer
(``adaptive.clevr.train.train``) from a recorded command and shipped in ``pretrained/``
through ``adaptive.infra.pretrained``: its EMA weights, and a manifest entry with the command,
the seed, the commit, the machine and the learning curve. The chapter evaluates it in its
build and fine-tunes from it; ``-p retrain True`` trains it again.

A recipe fixes everything the model depends on: the mini-CLEVR data (generated from a seed by
``adaptive.clevr.minigen``, so the data is remade, not shipped), every ``MacConfig`` field and
the torch threads, and ``starts_from`` may name the recipe whose shipped model it continues:
chapter 5 fine-tunes from ``mac12-24k``, which is ``mac12`` continued on four times the images
(``mac12`` had memorised its 60,000 questions) with ``coordinates`` (its stem also sees each cell's
position, and starts as ``mac12``'s: ``MacConfig.coordinates``). The shipped file is the run's whole
checkpoint (``adaptive.clevr.train``'s: weights, their moving average, optimiser, schedule,
curve): ``load_trained`` reads it,
``MacConfig(init_from=...)`` fine-tunes from it, and training to more epochs continues it.
Training resumes from ``--checkpoint-dir`` epoch by epoch, and ``--epochs N`` stops after N
epochs, which are the first N of any longer run (the learning-rate schedule follows the
validation accuracy, not the planned length). Run::

    python -m adaptive.clevr.pretrain mac12                  # train (or continue) and record it
    python -m adaptive.clevr.pretrain mac12-24k              # then continue it on 24,000 images
    python -m adaptive.clevr.pretrain mac12 --epochs 60      # continue the shipped model to 60 epochs
    python -m adaptive.clevr.pretrain mac12 --from-scratch --epochs 1 --directory /tmp/p   # its first epoch

Chapter 5 then fine-tunes its variants (shorter MACs, the gated MAC, ACT and DACT at each
penalty) for one epoch each from ``mac12-24k``, over three seeds. Three seeds of them take
longer than a default build can afford, so ``FINETUNES`` ships them too, their EMA weights only
(about 0.7 MB each); the chapter evaluates every one of them and trains them itself when any
of its settings differs (``finetune_variants`` builds both sets of configurations, so they
compare field by field)::

    python -m adaptive.clevr.pretrain finetunes              # every variant at every seed, 2 processes
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import _checks
from ..infra import checkpoint, pretrained
from ..infra.distributed import Context
from . import dataset, minigen
from .mac import DROPOUT
from .train import CHECKPOINT, MacConfig, evaluate, load_data, load_trained, results_row, train_many
from .train import train as train_run

DATA_PREFIX = "build/data/mini-clevr"       # the chapter's data folder prefix (its data_dir default)


@dataclass(frozen=True)
class Recipe:
    """One pretrained MAC: the data it learns from, its whole configuration and its threads.

    Args:
        description: what the model is, in one line.
        data: ``minigen`` settings: ``train`` and ``val`` images, ``questions_per_image``,
            ``seed`` and ``features``.
        config: the ``MacConfig`` fields (all but ``data_root``, which the data gives, and
            ``init_from``, which ``starts_from`` gives).
        threads: the torch CPU threads it trains on (float rounding depends on them).
        starts_from: another recipe whose shipped model this one starts from (its EMA weights,
            with a fresh optimiser and schedule: ``MacConfig.init_from``), e.g. to continue it on
            more data; None: a fresh initialisation.
    """

    description: str
    data: dict
    config: dict
    threads: int = 2
    starts_from: str | None = None

    def data_root(self, prefix: str = DATA_PREFIX) -> Path:
        """The data's folder, named as chapter 5 names it: one folder per generator setting."""
        d = self.data
        return Path(f"{prefix}-{d['features']}-{d['train']}-{d['val']}-q{d['questions_per_image']}-seed{d['seed']}")

    def differences(self, config: MacConfig, prefix: str = DATA_PREFIX) -> list[str]:
        """What makes ``config`` another run than this recipe's, one ``field: theirs != ours`` line
        each ([] when it is the same run; ``device``, ``workers`` and ``model_steps`` = ``max_steps`` are
        no difference)."""
        def settings(c: MacConfig) -> dict:
            values = dataclasses.asdict(c)
            values["model_steps"] = c.model_steps or c.max_steps
            return {k: v for k, v in values.items() if k not in ("device", "workers")}
        ours, theirs = settings(self.mac_config(prefix=prefix)), settings(config)
        return [f"{key}: {theirs[key]!r} != {ours[key]!r}" for key in ours if theirs[key] != ours[key]]

    def mac_config(self, epochs: int | None = None, prefix: str = DATA_PREFIX,
                   directory: str | Path = pretrained.DIRECTORY) -> MacConfig:
        """The run's ``MacConfig``; ``epochs`` trains only the first ``epochs``; ``directory``: the
        pretrained folder that holds the model named by ``starts_from``."""
        length = {} if epochs is None else {"epochs": _checks.positive_int("epochs", epochs)}
        start = {} if self.starts_from is None else {
            "init_from": str(Path(directory) / f"{entry_name(self.starts_from)}.pt")}
        return MacConfig(data_root=str(self.data_root(prefix)), **{**self.config, **start, **length})


RECIPES = {
    "mac12": Recipe(
        description="MAC of 12 steps, no gate, on chapter 5's default mini-CLEVR (attribute features)",
        data={"train": 6000, "val": 500, "questions_per_image": 10, "seed": 0, "features": "attributes"},
        config={"method": "fixed", "max_steps": 12, "width": 64, "embed_dim": 64, "stem_stride": 2, "lr": 1e-3,
                "ema": 0.99, "dropout": {key: 0.0 for key in DROPOUT}, "epochs": 21, "seed": 0}),
    # mac12 memorised its 60,000 questions (95.8 % of them answered, 86.7 % of new ones): the same
    # MAC continued on four times the images, whose first 6,000 and validation set are mac12's, with
    # each cell's position given to the stem. Without it (commit 3c17e1e's file) this stage reached
    # validation 0.914, 0.930 after epochs 1, 2 (with it 0.925, 0.946) and 0.948 after 5, its weakest
    # families the spatial counts: intersect_count 0.58, relate_count 0.73. With it: 0.968 after 8
    # epochs, then (the learning rate halved after the 9th) 0.967 0.973 0.973 0.972, training
    # batches 0.985 by the 12th; stopped there: intersect_count 0.681 -> 0.686 from epoch 8 to 12
    "mac12-24k": Recipe(
        description="mac12 continued on 24,000 mini-CLEVR images (240,000 questions), the first 6,000 its own, "
                    "its stem given each cell's position",
        data={"train": 24000, "val": 500, "questions_per_image": 10, "seed": 0, "features": "attributes"},
        config={"method": "fixed", "max_steps": 12, "width": 64, "embed_dim": 64, "stem_stride": 2, "lr": 5e-4,
                "ema": 0.99, "dropout": {key: 0.0 for key in DROPOUT}, "coordinates": True, "epochs": 12, "seed": 0},
        starts_from="mac12"),
}


def recipe_named(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"no pretrained MAC recipe named {name!r}; there are: {', '.join(sorted(RECIPES))}")
    return RECIPES[name]


def entry_name(name: str) -> str:
    """The manifest entry of a recipe's model, e.g. ``clevr/mac12-seed0``."""
    return f"clevr/{name}-seed{recipe_named(name).config['seed']}"


def command(name: str) -> str:
    return f"python -m adaptive.clevr.pretrain {name}"


def make_data(name: str, root: str | Path | None = None) -> Path:
    """Generate the recipe's mini-CLEVR in ``root`` (None: ``Recipe.data_root()``) unless it is there, about a
    minute for 6,000 images; the folder."""
    recipe = recipe_named(name)
    root = recipe.data_root() if root is None else Path(root)
    if not (root / "features" / "val.h5").exists():
        d = recipe.data
        minigen.main(["--out", str(root), "--train", str(d["train"]), "--val", str(d["val"]),
                      "--questions-per-image", str(d["questions_per_image"]), "--seed", str(d["seed"]),
                      "--features", d["features"]])
    return root


@contextlib.contextmanager
def _threads(count: int):
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train(name: str, epochs: int | None = None, checkpoint_dir: str | Path = "build/checkpoints/pretrain/clevr",
          directory: str | Path = pretrained.DIRECTORY, record: bool = True, progress: bool = True,
          data_prefix: str = DATA_PREFIX, from_scratch: bool = False) -> dict:
    """Train (or resume) recipe ``name`` under ``checkpoint_dir/name`` and record it; its results row.

    A run with no checkpoint of its own starts from the shipped one (the recorded file is the
    run's whole checkpoint: weights, optimiser, schedule, curve), so ``epochs`` beyond the
    shipped model's continue it, bit for bit as an uninterrupted run on the machine that made
    it; ``from_scratch`` trains from the first epoch instead.

    Args:
        name: a name in ``RECIPES``.
        epochs: train to ``epochs`` (None: the recipe's).
        checkpoint_dir: where the run checkpoints every epoch and resumes from.
        directory: the pretrained folder the model and its manifest entry go to.
        record: write the model and its entry (False: only train, and return the row).
        progress: progress bars and a line per epoch.
        data_prefix: the data folder's prefix (``Recipe.data_root``).
        from_scratch: never start from the shipped checkpoint.
    """
    recipe = recipe_named(name)
    config = recipe.mac_config(epochs, data_prefix, directory)
    if recipe.starts_from is not None:
        model_path(recipe.starts_from, directory)                          # there, its hash checked
    make_data(name, config.data_root)
    folder = Path(checkpoint_dir) / name
    shipped = pretrained.manifest(directory).get(entry_name(name))
    if not from_scratch and not (folder / CHECKPOINT).exists() and shipped is not None \
            and shipped["config"] == config.comparable() and len(shipped["curve"]) <= config.epochs:
        payload, _ = pretrained.load(entry_name(name), directory)          # its hash checked
        checkpoint.save(folder / CHECKPOINT, payload)
    with _threads(recipe.threads):
        row = train_run(config, folder, progress=progress)
    if record:
        # the whole checkpoint: load_trained and init_from read its EMA weights, train resumes from it;
        # its run is this recipe's (a checkpoint resumed to fewer epochs than first planned keeps the plan)
        payload = {**checkpoint.read(folder / CHECKPOINT), "run": dataclasses.asdict(config)}
        pretrained.record(entry_name(name), payload, command=command(name),
                          seed=config.seed, curve=row["curve"], directory=directory,
                          extra={"train_seconds": row["train_seconds"], "threads": recipe.threads,
                                 "data": recipe.data})
    return row


def continued_curve(first: list[dict], second: list[dict]) -> list[dict]:
    """One learning curve of two stages: ``second``'s epochs renumbered to continue ``first``'s."""
    return first + [{**row, "epoch": row["epoch"] + len(first)} for row in second]


def model_path(name: str, directory: str | Path = pretrained.DIRECTORY) -> tuple[Path, dict]:
    """The recorded model's file, its hash checked (``MacConfig(init_from=...)`` reads it), and its entry."""
    _, entry = pretrained.load(entry_name(name), directory)
    return Path(directory) / entry["file"], entry


def load_model(name: str, directory: str | Path = pretrained.DIRECTORY, device: str = "cpu"):
    """The recorded MAC (eval mode), its ``MacConfig``, vocabulary and manifest entry."""
    path, entry = model_path(name, directory)
    mac, config, vocab = load_trained(path, device)
    return mac, config, vocab, entry


def evaluate_pretrained(name: str, directory: str | Path = pretrained.DIRECTORY, device: str = "cpu",
                        data_root: str | Path | None = None) -> dict:
    """The recorded MAC evaluated now on its validation questions (per-question early exit, as
    ``train`` evaluates); a results row as ``train`` returns it, with its curve and training time
    from the manifest and ``"pretrained"``: the entry's name and commit.

    ``data_root`` evaluates it on that folder's validation questions instead of generating the
    recipe's data (mac12-24k on chapter 5's 6,000-image folder, whose validation set is its own).

    Raises:
        ValueError: the data was generated differently (its vocabulary is not the model's).
    """
    device = _checks.device(device)
    mac, config, vocab, entry = load_model(name, directory, str(device))
    if data_root is None:
        make_data(name, config.data_root)
    data_config = config if data_root is None else dataclasses.replace(config, data_root=str(data_root))
    data_vocab, _, val_set = load_data(data_config)
    if (data_vocab.tokens, data_vocab.answers) != (vocab.tokens, vocab.answers):
        raise ValueError(f"the data in {data_config.data_root} is not the data {entry_name(name)} was trained on "
                         f"(the vocabularies differ); delete the folder to generate it again")
    loader = dataset.make_loader(val_set, batch_size=config.batch_size, shuffle=False)
    evaluation = evaluate(mac, loader, config.halting(), vocab, Context(device=device))
    state = {"curve": entry["curve"], "epoch": len(entry["curve"]), "seconds": entry["train_seconds"],
             "world_size": 1}
    return {**results_row(config, state, evaluation, Context(device=device), None),
            "pretrained": pretrained.origin(entry_name(name), entry)}


# ----------------------------------------------------------------------------------------------
# Chapter 5's fine-tuned variants


def finetune_variants(common: dict, start: str | Path, epochs: int, max_steps: int, fixed_lengths, act_taus,
                      dact_taus, longer_steps: int | None) -> list[tuple[str, MacConfig]]:
    """Chapter 5's variants, each named as its figures name it, fine-tuned for ``epochs`` from the
    checkpoint ``start`` with what its model saw (``coordinates``).

    The variants: a MAC of each of ``fixed_lengths``, the gated MAC of ``max_steps``, ACT at each
    of ``act_taus`` and DACT at each of ``dact_taus`` (L = ``max_steps``), and, unless
    ``longer_steps`` is None, DACT at the smallest of ``dact_taus`` with L = ``longer_steps``:
    more steps than ``start`` has parameters for, as the DACT paper's best model (15 from 12); the
    steps beyond start from a fresh initialisation. ``common``: the ``MacConfig`` fields they
    share (data, sizes, learning rate, seed, device; ``model_steps`` = ``max_steps``).
    """
    coordinates = load_trained(start)[1].coordinates        # the variants see what their start saw
    shared = {**common, "epochs": epochs, "init_from": str(start), "coordinates": coordinates}
    variants = ([(f"MAC {k} steps", MacConfig(method="fixed", max_steps=k, **shared)) for k in fixed_lengths]
                + [("gated MAC", MacConfig(method="fixed", max_steps=max_steps, gate=True, **shared))]
                + [(f"ACT tau={t:g}", MacConfig(method="act", max_steps=max_steps, tau=t, **shared))
                   for t in act_taus]
                + [(f"DACT tau={t:g}", MacConfig(method="dact", max_steps=max_steps, tau=t, **shared))
                   for t in dact_taus])
    if longer_steps is not None:
        variants.append((f"DACT tau={min(dact_taus):g}, L={longer_steps}", MacConfig(
            method="dact", max_steps=longer_steps, tau=min(dact_taus), **{**shared, "model_steps": longer_steps})))
    return variants


@dataclass(frozen=True)
class Finetunes:
    """Chapter 5's fine-tuned variants at its default settings, for every seed, shipped.

    Args:
        starts_from: the recipe whose shipped model every variant is fine-tuned from.
        data_from: the recipe whose data they train on (chapter 5's default folder).
        fixed_lengths, act_taus, dact_taus, longer_steps: the variants (``finetune_variants``);
            chapter 5's defaults.
        seeds: the fine-tuning seeds (initialisation of what the start lacks, order of the questions).
        epochs: fine-tuning epochs of every variant.
        workers: processes training the variants at once, one torch thread each, as chapter 5 does.
    """

    starts_from: str = "mac12-24k"
    data_from: str = "mac12"
    fixed_lengths: tuple[int, ...] = (1, 2, 3, 6)
    act_taus: tuple[float, ...] = (0.001, 0.01)
    dact_taus: tuple[float, ...] = (0.001, 0.01, 0.05)
    longer_steps: int | None = 15
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 1
    workers: int = 2

    def variants(self, seed: int, directory: str | Path = pretrained.DIRECTORY,
                 prefix: str = DATA_PREFIX) -> list[tuple[str, MacConfig]]:
        """The variants of one seed: ``finetune_variants`` with ``data_from``'s settings, from
        ``starts_from``'s shipped file in ``directory`` (its hash checked)."""
        recipe = recipe_named(self.data_from)
        common = {key: value for key, value in recipe.config.items() if key not in ("method", "max_steps", "epochs")}
        max_steps = recipe.config["max_steps"]
        start, _ = model_path(self.starts_from, directory)
        return finetune_variants({**common, "data_root": str(recipe.data_root(prefix)), "seed": seed,
                                  "model_steps": max_steps}, start, self.epochs, max_steps, self.fixed_lengths,
                                 self.act_taus, self.dact_taus, self.longer_steps)

    def entry(self, config: MacConfig) -> str:
        """The manifest entry of a variant's shipped model, e.g. ``clevr/finetunes/dact-tau0.001-L12-seed0``."""
        return f"clevr/finetunes/{config.name()}"

    def ships(self, configs: list[MacConfig], directory: str | Path = pretrained.DIRECTORY,
              prefix: str = DATA_PREFIX) -> bool:
        """Whether ``configs`` are exactly the shipped variants of one seed, in order and field by
        field (``device`` and ``workers`` aside)."""
        seeds = {config.seed for config in configs}
        if len(seeds) != 1 or not seeds <= set(self.seeds):
            return False

        def fields(config: MacConfig) -> dict:
            return {key: value for key, value in dataclasses.asdict(config).items() if key not in ("device", "workers")}
        shipped = self.variants(seeds.pop(), directory, prefix)
        return [fields(config) for _, config in shipped] == [fields(config) for config in configs]


FINETUNES = Finetunes()
FINETUNES_COMMAND = "python -m adaptive.clevr.pretrain finetunes"
SHIPPED_FINETUNE_KEYS = ("config", "state", "run", "ema", "model_args", "vocab", "init")   # no optimiser


def train_finetunes(checkpoint_dir: str | Path = "build/checkpoints/pretrain/clevr/finetunes",
                    directory: str | Path = pretrained.DIRECTORY, grid: Finetunes = FINETUNES, record: bool = True,
                    prefix: str = DATA_PREFIX) -> list[dict]:
    """Train (or resume) every variant of ``grid`` at every seed under ``checkpoint_dir`` and record
    each one's EMA weights in ``directory``; their results rows, seed by seed."""
    make_data(grid.data_from, recipe_named(grid.data_from).data_root(prefix))
    configs = [config for seed in grid.seeds for _, config in grid.variants(seed, directory, prefix)]
    rows = train_many([(config, Path(checkpoint_dir) / config.name()) for config in configs], workers=grid.workers)
    if record:
        for config, row in zip(configs, rows):
            payload = checkpoint.read(Path(checkpoint_dir) / config.name() / CHECKPOINT)
            pretrained.record(grid.entry(config), {key: payload[key] for key in SHIPPED_FINETUNE_KEYS},
                              command=FINETUNES_COMMAND, seed=config.seed, curve=row["curve"], directory=directory,
                              extra={"train_seconds": row["train_seconds"], "threads": 1, "workers": grid.workers})
    return rows


def evaluate_finetune(config: MacConfig, directory: str | Path = pretrained.DIRECTORY,
                      grid: Finetunes = FINETUNES) -> dict:
    """A shipped variant evaluated now on ``config``'s validation questions, as ``train`` evaluates it;
    its results row, with the curve and training time from the manifest and ``"pretrained"``."""
    name = grid.entry(config)
    _, entry = pretrained.load(name, directory)                            # its hash checked
    mac, shipped, vocab = load_trained(Path(directory) / entry["file"], str(config.device))
    data_vocab, _, val_set = load_data(config)
    if (data_vocab.tokens, data_vocab.answers) != (vocab.tokens, vocab.answers):
        raise ValueError(f"the data in {config.data_root} is not the data {name} was trained on "
                         f"(the vocabularies differ); delete the folder to generate it again")
    loader = dataset.make_loader(val_set, batch_size=shipped.batch_size, shuffle=False)
    context = Context(device=torch.device(config.device))
    evaluation = evaluate(mac, loader, shipped.halting(), vocab, context)
    state = {"curve": entry["curve"], "epoch": len(entry["curve"]), "seconds": entry["train_seconds"],
             "world_size": 1}
    return {**results_row(shipped, state, evaluation, context, None), "pretrained": pretrained.origin(name, entry)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adaptive.clevr.pretrain",
                                     description="Train chapter 5's pretrained MAC and record it in the "
                                                 "pretrained folder.")
    parser.add_argument("name", help=f"the recipe: {', '.join(sorted(RECIPES))}; or finetunes: chapter 5's "
                                     f"fine-tuned variants at every seed (FINETUNES)")
    parser.add_argument("--epochs", type=int, default=None, help="train only the first epochs (default: all)")
    parser.add_argument("--checkpoint-dir", default="build/checkpoints/pretrain/clevr",
                        help="where the run checkpoints and resumes from (default build/checkpoints/pretrain/clevr)")
    pretrained.add_directory_argument(parser)
    parser.add_argument("--from-scratch", action="store_true",
                        help="train from the first epoch, not from the shipped checkpoint")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.name == "finetunes":
        rows = train_finetunes(Path(args.checkpoint_dir) / "finetunes", args.directory)
        for row in rows:
            print(f"{FINETUNES.entry(MacConfig(**row['config']))}: accuracy {row['accuracy']:.4f} at "
                  f"{row['mean_steps']:.2f} steps ({row['train_seconds']:.0f} s)")
        return 0
    recipe_named(args.name)
    row = train(args.name, args.epochs, args.checkpoint_dir, args.directory, progress=not args.quiet,
                from_scratch=args.from_scratch)
    print(f"{entry_name(args.name)}: accuracy {row['accuracy']:.4f} after {row['epochs']} epochs "
          f"({row['train_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
