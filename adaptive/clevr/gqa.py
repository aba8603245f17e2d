"""GQA (Hudson & Manning, CVPR 2019), the DACT paper's second data set, in the CLEVR chapter's format.

GQA asks compositional questions about real photographs (Visual Genome). The DACT paper
(Eyzaguirre & Soto 2020, sec. 4) trains the same MAC on it. This module reads GQA as
published and yields the same ``Example`` as ``adaptive.clevr.dataset.ClevrQuestions``, so
that ``collate``, ``make_loader``, ``MAC`` and the trainer take it unchanged. Nothing is
downloaded here: the user downloads GQA from its download page (``DOWNLOAD_PAGE``).

The files, and where this module looks for them under ``root``::

    questions1.2.zip   -> <root>/questions/ (or <root>/)
        train_balanced_questions.json, val_balanced_questions.json, testdev_balanced_questions.json
    spatialFeatures.zip -> <root>/spatial/ (or <root>/spatialFeatures/, or <root>/)
        gqa_spatial_info.json, gqa_spatial_0.h5 ... gqa_spatial_15.h5

A questions file is one JSON object, question id -> question; of each question this module
reads ``imageId``, ``question``, ``answer`` (absent: -1, as in CLEVR's test split) and
``types`` = {``structural``, ``semantic``, ``detailed``}. The spatial features are ResNet
grids of (2048, 7, 7) per image: shard i is ``gqa_spatial_<i>.h5`` with one dataset
``features`` of shape (N_i, 2048, 7, 7), and ``gqa_spatial_info.json`` maps an imageId to
{``file``: i, ``idx``: row}. (GQA's object features, ``gqa_objects_<i>.h5`` with
``features`` (N, 100, 2048) and ``bboxes`` (N, 100, 4), are not read: MAC's stem is a
convolution over a grid, and a list of objects has no neighbours.)

How GQA's fields become an ``Example``:

- tokens: ``questions.tokenize``, as for CLEVR; a word never seen in training is <unk> (1).
- answer: its id among the training answers. An answer never seen in training cannot be
  predicted; by default (``unknown_answers="keep"``, the val and testdev default) it gets
  id -1, which ``adaptive.clevr.train.evaluate`` scores as wrong, as GQA's own accuracy
  would. The train split refuses one (``"raise"``), since -1 is no training target.
- qtype: ``types.structural`` (verify, query, choose, logical, compare).
- family: ``types.detailed`` (the fine-grained type, the default) or the coarse
  ``types.semantic`` (obj, attr, rel, global, ...): ``family_field``.

The ids of tokens, answers, families and types come from the TRAIN split only and are
saved in ``<root>/vocab.json`` (``vocab_for``), so val and testdev use the training ids. The
vocabulary is a ``questions.Vocab``: a GQA family is stored as the pair (family_field, id),
as CLEVR stores (template file, index in file), and its name in ``family_names``. A family
or type that training never saw is -1 (left out of the per-family tables of ``evaluate``).
``GqaQuestions.unknown`` counts every such question.

Training. ``adaptive.clevr.train`` reads GQA through ``load_data`` here when a run's
``MacConfig.dataset`` is ``"gqa"`` (``paper_config`` sets it; it is the paper's recipe, and
``PAPER`` gives its sources)::

    from adaptive.clevr import gqa, train
    common = dict(device="cuda", bf16=True, workers=8)
    train.train(gqa.paper_config("data/gqa", "pretrain", **common), "build/gqa/pretrain")
    for tau in gqa.PAPER.dact_taus:
        run = gqa.paper_config("data/gqa", "finetune", "dact", tau,
                               init_from="build/gqa/pretrain/checkpoint.pt", **common)
        train.train(run, f"build/gqa/{run.name()}")

CLI (validates a download, prints counts, writes nothing)::

    python -m adaptive.clevr.gqa check --root data/gqa
"""
from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch.utils.data import Dataset

from .. import _checks
from ..infra import distributed
from ..infra.distributed import Context
from .dataset import Example, encode_questions
from .features import FeatureFile
from .questions import PAD, UNK, Vocab, tokenize

SPLITS = ("train", "val", "testdev")
QUESTION_FILE = "{split}_balanced_questions.json"
INFO_FILE = "gqa_spatial_info.json"
SHARD_FILE = "gqa_spatial_{index}.h5"
DATASET = "features"
FEATURE_SHAPE = (2048, 7, 7)                      # (C, H, W) of one image's spatial features
FAMILY_FIELDS = ("detailed", "semantic")          # the ``types`` entry that names a question's family
TYPE_FIELDS = ("structural", *FAMILY_FIELDS)
UNKNOWN_ANSWERS = ("keep", "raise")
DOWNLOAD_PAGE = "https://cs.stanford.edu/people/dorarad/gqa/download.html"
HOW_TO_GET = (f"nothing is downloaded at run time: download GQA from {DOWNLOAD_PAGE}, unpack questions1.2.zip "
              f"(train_balanced_questions.json, val_balanced_questions.json, testdev_balanced_questions.json) "
              f"into <root>/questions/ and spatialFeatures.zip ({INFO_FILE} and gqa_spatial_0.h5 ... "
              f"gqa_spatial_15.h5) into <root>/spatial/")


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError("reading GQA's features needs h5py: .venv/bin/pip install h5py==3.16.0") from None
    return h5py


def _find(root: Path, name: str, folders: tuple[str, ...]) -> Path:
    """The first of ``<root>/<folder>/<name>`` that exists; ValueError listing where it looked."""
    candidates = [root / folder / name for folder in folders]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ValueError(f"GQA file {name} is not in {root} (looked for {', '.join(map(str, candidates))}); "
                     f"{HOW_TO_GET}")


def questions_file(root: str | os.PathLike, split: str) -> Path:
    """``<root>/questions/<split>_balanced_questions.json`` (or directly in ``root``)."""
    _checks.choice("split", split, SPLITS)
    return _find(Path(root), QUESTION_FILE.format(split=split), ("questions", "."))


def spatial_folder(root: str | os.PathLike) -> Path:
    """The folder holding ``gqa_spatial_info.json``: ``<root>/spatial``, ``<root>/spatialFeatures`` or ``root``."""
    return _find(Path(root), INFO_FILE, ("spatial", "spatialFeatures", ".")).parent


def _read_json(path: Path, what: str):
    """The parsed JSON at ``path``; ValueError naming the file when it is missing or malformed."""
    if not path.is_file():
        raise ValueError(f"GQA {what} {path} does not exist; {HOW_TO_GET}")
    try:
        with path.open() as file:
            return json.load(file)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"GQA {what} {path} is not valid JSON ({error}); download it again: {HOW_TO_GET}") from None


# --------------------------------------------------------------------------------------------
# Questions


class Question(NamedTuple):
    """The fields of one GQA question that this module uses."""

    qid: str                    # the question id (the key in the file)
    image_id: str               # imageId: the key of gqa_spatial_info.json
    text: str                   # the question
    answer: str | None          # None when the split has no answers
    structural: str             # types.structural: verify, query, choose, logical, compare
    semantic: str               # types.semantic: obj, attr, rel, global, ...
    detailed: str               # types.detailed: the fine-grained type


def read_questions(path: str | os.PathLike) -> list[Question]:
    """The questions of a GQA balanced questions file, in file order; ValueError naming the
    file and the question when it is missing or not in GQA's format."""
    path = Path(path)
    payload = _read_json(path, "questions file")
    if not isinstance(payload, dict):
        raise ValueError(f"GQA questions file {path} must be a JSON object mapping question ids to questions "
                         f"(GQA's format), got a JSON {type(payload).__name__}")
    if not payload:
        raise ValueError(f"GQA questions file {path} holds no questions")
    items = []
    for qid, question in payload.items():
        if not isinstance(question, dict):
            raise ValueError(f"GQA questions file {path}: question {qid!r} must be a JSON object, "
                             f"got {type(question).__name__}")
        for key in ("imageId", "question"):
            if not isinstance(question.get(key), str):
                raise ValueError(f"GQA questions file {path}: question {qid!r} needs a string {key!r}, "
                                 f"got {question.get(key)!r}")
        types = question.get("types")
        if not isinstance(types, dict) or not all(isinstance(types.get(k), str) for k in TYPE_FIELDS):
            raise ValueError(f"GQA questions file {path}: question {qid!r} needs 'types' with strings 'structural', "
                             f"'semantic' and 'detailed', got {types!r}")
        answer = question.get("answer")
        if answer is not None and not isinstance(answer, str):
            raise ValueError(f"GQA questions file {path}: question {qid!r} has answer {answer!r}; it must be a string")
        items.append(Question(str(qid), question["imageId"], question["question"], answer,
                              types["structural"], types["semantic"], types["detailed"]))
    return items


# --------------------------------------------------------------------------------------------
# Vocabulary: the ids of the training split


def build_vocab(train_questions: list[Question], family_field: str = "detailed") -> Vocab:
    """The vocabulary of the TRAIN questions: tokens (0 <pad>, 1 <unk>), answers, families
    (``types.<family_field>``) and types (``types.structural``), each sorted."""
    _checks.choice("family_field", family_field, FAMILY_FIELDS)
    if not train_questions:
        raise ValueError("train_questions is empty; pass the questions of train_balanced_questions.json")
    answers = sorted({q.answer for q in train_questions if q.answer is not None})
    if not answers:
        raise ValueError("the training questions have no answers; build the vocabulary from "
                         "train_balanced_questions.json")
    tokens = sorted({token for q in train_questions for token in tokenize(q.text)} - {PAD, UNK})
    families = sorted({getattr(q, family_field) for q in train_questions})
    types = sorted({q.structural for q in train_questions})
    return Vocab([PAD, UNK] + tokens, answers, [(family_field, i) for i in range(len(families))], types,
                 dict(enumerate(families)))


def family_field_of(vocab: Vocab) -> str:
    """Which ``types`` entry a GQA vocabulary's families name; ValueError for another vocabulary."""
    fields = {field for field, _ in vocab.families}
    if len(fields) != 1 or not fields <= set(FAMILY_FIELDS) or len(vocab.family_names) != len(vocab.families):
        raise ValueError(f"the vocabulary is not a GQA vocabulary (its families {vocab.families[:3]}... are not "
                         f"(field, id) pairs of one of {FAMILY_FIELDS} with names); build it with gqa.build_vocab")
    return fields.pop()


def vocab_for(root: str | os.PathLike, family_field: str = "detailed", path: str | os.PathLike | None = None) -> Vocab:
    """GQA's vocabulary: loaded from ``path`` (default ``<root>/vocab.json``) when it exists,
    else built from the train split and saved there."""
    _checks.choice("family_field", family_field, FAMILY_FIELDS)
    path = Path(path) if path is not None else Path(root) / "vocab.json"
    if path.is_file():
        vocab = Vocab.load(path)
        saved = family_field_of(vocab)
        if saved != family_field:
            raise ValueError(f"vocabulary file {path} names families by types.{saved}, not types.{family_field}; "
                             f"pass family_field={saved!r}, or another path to build a new vocabulary")
        return vocab
    vocab = build_vocab(read_questions(questions_file(root, "train")), family_field)
    vocab.save(path)
    return vocab


# --------------------------------------------------------------------------------------------
# Spatial features


def _shard_rows(path: Path, row_shape: tuple[int, ...]) -> int:
    """The rows of one spatial shard, checked to be (N, *row_shape); ValueError otherwise."""
    if not path.is_file():
        raise ValueError(f"GQA features file {path} does not exist but {INFO_FILE} places images in it; {HOW_TO_GET}")
    try:
        with _h5py().File(path, "r") as file:
            if DATASET not in file:
                raise ValueError(f"GQA features file {path} has no dataset named {DATASET!r} (it has "
                                 f"{sorted(file.keys())}); GQA's gqa_spatial_<i>.h5 hold {DATASET!r}; {HOW_TO_GET}")
            shape = tuple(int(n) for n in file[DATASET].shape)
    except OSError as error:
        raise ValueError(f"GQA features file {path} is not a readable HDF5 file ({error}); {HOW_TO_GET}") from None
    if len(shape) != 1 + len(row_shape) or shape[1:] != tuple(row_shape):
        raise ValueError(f"GQA features file {path}: dataset {DATASET!r} has shape {shape}; it must be "
                         f"(N, {', '.join(map(str, row_shape))}) (row_shape={tuple(row_shape)}; GQA's spatial "
                         f"features are (N, 2048, 7, 7))")
    return shape[0]


class SpatialFeatures:
    """GQA's spatial features: ``features[image_id]`` is a (C, H, W) float32 tensor.

    Made from a folder holding ``gqa_spatial_info.json`` and the shards it names; every shard
    is checked (dataset ``features``, rows of ``row_shape``) and every info entry's row is
    checked to exist before any compute. The shards stay closed until a row is read, and a
    pickled copy (a DataLoader worker) opens its own handles (``features.FeatureFile``).
    """

    def __init__(self, folder: str | os.PathLike, row_shape: tuple[int, ...] = FEATURE_SHAPE):
        self.folder = Path(folder)
        self.info_path = self.folder / INFO_FILE
        if not (isinstance(row_shape, tuple) and row_shape and all(
                isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in row_shape)):
            raise ValueError(f"row_shape must be a tuple of integers >= 1 such as {FEATURE_SHAPE}, got {row_shape!r}")
        info = _read_json(self.info_path, "features index")
        if not isinstance(info, dict) or not info:
            raise ValueError(f"GQA features index {self.info_path} must be a non-empty JSON object mapping imageIds "
                             f"to {{'file': shard, 'idx': row}}; {HOW_TO_GET}")
        self.where: dict[str, tuple[int, int]] = {}                   # imageId -> (shard, row)
        for image_id, entry in info.items():
            place = (entry.get("file"), entry.get("idx")) if isinstance(entry, dict) else (None, None)
            if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in place):
                raise ValueError(f"GQA features index {self.info_path}: image {image_id!r} has {entry!r}; it must be "
                                 f"{{'file': shard >= 0, 'idx': row >= 0, ...}}")
            self.where[image_id] = place
        rows = {shard: _shard_rows(self.folder / SHARD_FILE.format(index=shard), row_shape)
                for shard in sorted({shard for shard, _ in self.where.values()})}
        for image_id, (shard, row) in self.where.items():
            if row >= rows[shard]:
                raise ValueError(f"GQA features index {self.info_path} places image {image_id!r} in row {row} of "
                                 f"{SHARD_FILE.format(index=shard)}, which has {rows[shard]} rows; the index and the "
                                 f"shards come from different downloads? {HOW_TO_GET}")
        self.shards = {shard: FeatureFile(self.folder / SHARD_FILE.format(index=shard)) for shard in rows}
        self.shape = (len(self.where), *row_shape)                    # (images, C, H, W)

    def __len__(self) -> int:
        return len(self.where)

    def __contains__(self, image_id: str) -> bool:
        return image_id in self.where

    def locate(self, image_id: str) -> tuple[int, int]:
        """(shard, row) of an image."""
        if image_id not in self.where:
            raise KeyError(f"image {image_id!r} has no row in {self.info_path}")
        return self.where[image_id]

    def read(self, shard: int, row: int) -> torch.Tensor:
        """(C, H, W) float32: row ``row`` of shard ``shard``."""
        return self.shards[shard][row]

    def __getitem__(self, image_id: str) -> torch.Tensor:
        return self.read(*self.locate(image_id))


# --------------------------------------------------------------------------------------------
# The dataset


class GqaQuestions(Dataset):
    """The questions of one GQA split with their spatial features; ``dataset[i]`` is an ``Example``.

    Args:
        questions: the split's questions (``read_questions``).
        features: the spatial features; every question's image must have a row.
        vocab: the TRAIN split's vocabulary (``vocab_for``, ``build_vocab``).
        split: the split's name, for messages.
        max_length: the padded length of ``tokens`` (None: the split's longest question).
        unknown_answers: an answer never seen in training gets id -1 (``"keep"``: scored wrong
            at evaluation) or is refused (``"raise"``, for training).

    ``unknown`` counts the questions with an unknown word, answer, family or type.
    """

    def __init__(self, questions: list[Question], features: SpatialFeatures, vocab: Vocab, split: str = "?",
                 max_length: int | None = None, unknown_answers: str = "raise"):
        _checks.choice("unknown_answers", unknown_answers, UNKNOWN_ANSWERS)
        if not questions:
            raise ValueError(f"the {split} split holds no questions")
        family_field = family_field_of(vocab)
        for q in questions:
            if q.image_id not in features:
                raise ValueError(f"GQA {split} question {q.qid!r} is about image {q.image_id!r}, which has no row in "
                                 f"{features.info_path}; the questions and the features come from different "
                                 f"downloads? {HOW_TO_GET}")
        answer_ids = {a: i for i, a in enumerate(vocab.answers)}
        family_ids = {vocab.family_names[i]: i for i in range(len(vocab.families))}
        type_ids = {t: i for i, t in enumerate(vocab.types)}
        unseen = [q for q in questions if q.answer is not None and q.answer not in answer_ids]
        if unseen and unknown_answers == "raise":
            raise ValueError(f"{len(unseen)} GQA {split} question(s) have answers never seen in training, e.g. "
                             f"question {unseen[0].qid!r} answers {unseen[0].answer!r}; a training target must be a "
                             f"known answer (unknown_answers='raise'); pass unknown_answers='keep' to score them "
                             f"as wrong (id -1)")
        self.tokens, self.lengths = encode_questions(vocab, [q.text for q in questions], max_length,
                                                     f"the GQA {split} split")        # (Q, T), (Q,)
        self.answers = torch.tensor([answer_ids.get(q.answer, -1) for q in questions], dtype=torch.int64)   # (Q,)
        self.families = torch.tensor([family_ids.get(getattr(q, family_field), -1) for q in questions],
                                     dtype=torch.int64)                            # (Q,)
        self.qtypes = torch.tensor([type_ids.get(q.structural, -1) for q in questions], dtype=torch.int64)  # (Q,)
        places = torch.tensor([features.locate(q.image_id) for q in questions], dtype=torch.int64)         # (Q, 2)
        self.shard, self.row = places.unbind(1)                                    # (Q,) each
        self.unknown = {"tokens": int((self.tokens == 1).any(dim=1).sum()), "answers": len(unseen),   # 1: <unk>
                        "families": int((self.families < 0).sum()), "types": int((self.qtypes < 0).sum())}
        self.question_ids = [q.qid for q in questions]
        self.features, self.vocab, self.split = features, vocab, split

    @classmethod
    def from_root(cls, root: str | os.PathLike, split: str, vocab: Vocab | None = None,
                  row_shape: tuple[int, ...] = FEATURE_SHAPE, max_length: int | None = None,
                  unknown_answers: str | None = None) -> GqaQuestions:
        """A split of a GQA folder (layout in the module docstring). ``vocab`` defaults to
        ``vocab_for(root)``; ``unknown_answers`` to ``"raise"`` for train, ``"keep"`` otherwise."""
        questions = read_questions(questions_file(root, split))
        features = SpatialFeatures(spatial_folder(root), row_shape)
        vocab = vocab_for(root) if vocab is None else vocab
        if unknown_answers is None:
            unknown_answers = "raise" if split == "train" else "keep"
        return cls(questions, features, vocab, split, max_length, unknown_answers)

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> Example:
        return Example(self.tokens[index].long(), self.lengths[index],
                       self.features.read(int(self.shard[index]), int(self.row[index])),   # (C, H, W)
                       self.answers[index], self.families[index], self.qtypes[index])


def load_data(config, context: Context = Context()):
    """(vocab, train set, val set) of the GQA folder ``config.data_root``: the counterpart of
    ``adaptive.clevr.train.load_data``, with its signature. Rank 0 writes ``<root>/vocab.json``
    on first use while the other ranks wait."""
    root = Path(config.data_root)
    if not root.is_dir():
        raise ValueError(f"data_root {root} does not exist; {HOW_TO_GET}")
    vocab = distributed.main_first(context, lambda: vocab_for(root))
    return vocab, GqaQuestions.from_root(root, "train", vocab), GqaQuestions.from_root(root, "val", vocab)


# --------------------------------------------------------------------------------------------
# The paper's recipe


@dataclass(frozen=True)
class PaperSettings:
    """The DACT paper's GQA recipe, and where each value comes from.

    From the paper (Eyzaguirre & Soto 2020, sec. 4, p. 7): "pretraining a non-gated MAC
    (4 steps, 5 epochs) and then finetuning ACT, DACT and gated MAC variants for another 15
    epochs". From ``../shared/reference/targets.md`` (marked [paper/blog]: the paper's
    supplementary Table 1, which is not in ``../shared/papers/``): DACT's penalties. The rest
    are assumptions: the paper does not say which GQA features it used (GQA's spatial grid
    is what this module reads) nor change MAC's sizes or optimiser for GQA, so they are
    the CLEVR recipe of the authors' code (``adaptive.clevr.train``'s defaults).
    """

    max_steps: int = 4                                # paper: MAC of 4 steps
    pretrain_epochs: int = 5                          # paper
    finetune_epochs: int = 15                         # paper
    dact_taus: tuple[float, ...] = (5e-2, 1e-2, 5e-3, 1e-3)   # targets.md [paper/blog]
    feature_shape: tuple[int, ...] = FEATURE_SHAPE    # assumption: GQA's spatial features
    width: int = 512                                  # assumption: CLEVR's
    embed_dim: int = 300                              # assumption: CLEVR's
    batch_size: int = 64                              # assumption: CLEVR's
    lr: float = 1e-4                                  # assumption: CLEVR's


PAPER = PaperSettings()
STAGES = ("pretrain", "finetune")


def paper_config(data_root: str | os.PathLike, stage: str, method: str | None = None, tau: float = 0.0,
                 **overrides):
    """The ``MacConfig`` of one run of the paper's GQA recipe (``PAPER``).

    ``stage="pretrain"``: a plain MAC (``fixed``, no gate) for 5 epochs. ``stage="finetune"``:
    ``method`` (``"dact"``, ``"act"``, or ``"fixed"`` with ``gate=True``, the gated MAC) with
    penalty ``tau`` for 15 epochs, started from the pre-trained checkpoint given as
    ``init_from``. ``overrides`` are further ``MacConfig`` fields (``device``, ``bf16``, ``workers``...).
    """
    from .train import MacConfig  # here, so that the trainer may import this module
    _checks.choice("stage", stage, STAGES)
    if stage == "pretrain":
        if method not in (None, "fixed") or tau != 0 or overrides.get("gate") or overrides.get("init_from"):
            raise ValueError(f"the paper pre-trains a plain MAC: stage='pretrain' takes no method, tau, gate or "
                             f"init_from, got method={method!r}, tau={tau!r}, gate={overrides.get('gate')!r}, "
                             f"init_from={overrides.get('init_from')!r}")
        run = {"method": "fixed", "epochs": PAPER.pretrain_epochs}
    else:
        if method is None:
            raise ValueError("stage='finetune' needs method: 'dact', 'act', or 'fixed' with gate=True (the gated MAC)")
        if overrides.get("init_from") is None:
            raise ValueError("stage='finetune' needs init_from: the checkpoint.pt of the stage='pretrain' run")
        run = {"method": method, "tau": tau, "epochs": PAPER.finetune_epochs}
    recipe = {"dataset": "gqa", "max_steps": PAPER.max_steps, "width": PAPER.width, "embed_dim": PAPER.embed_dim,
              "batch_size": PAPER.batch_size, "lr": PAPER.lr, **run}
    return MacConfig(data_root=str(data_root), **{**recipe, **overrides})


# --------------------------------------------------------------------------------------------
# Checking a download


def check(root: str | os.PathLike, splits: tuple[str, ...] = ("train", "val"),
          row_shape: tuple[int, ...] = FEATURE_SHAPE, family_field: str = "detailed") -> dict:
    """Validate a GQA folder without writing anything; the counts of each split.

    The vocabulary is built from the train split in memory (``vocab.json`` is left alone),
    so the counts of unknown words, answers, families and types are against training.
    """
    for split in splits:
        _checks.choice("splits", split, SPLITS)
    features = SpatialFeatures(spatial_folder(root), row_shape)
    train_questions = read_questions(questions_file(root, "train"))
    vocab = build_vocab(train_questions, family_field)
    report = {"images": len(features), "shards": len(features.shards), "row_shape": list(row_shape),
              "tokens": len(vocab.tokens), "answers": len(vocab.answers), "families": len(vocab.families),
              "types": vocab.types, "splits": {}}
    for split in splits:
        questions = train_questions if split == "train" else read_questions(questions_file(root, split))
        data = GqaQuestions(questions, features, vocab, split, unknown_answers="keep")
        report["splits"][split] = {"questions": len(data), "images": len({q.image_id for q in questions}),
                                   "longest": int(data.lengths.max()), "unknown": data.unknown}
    return report


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m adaptive.clevr.gqa",
                                     description="GQA for MAC: validate a download (nothing is downloaded).")
    commands = parser.add_subparsers(dest="command", required=True)
    checking = commands.add_parser("check", help="check the questions and spatial features of a GQA folder")
    checking.add_argument("--root", required=True, help="GQA folder, e.g. data/gqa (layout: module docstring)")
    checking.add_argument("--splits", nargs="+", default=["train", "val"], choices=SPLITS)
    checking.add_argument("--family-field", default="detailed", choices=FAMILY_FIELDS,
                          help="types entry that names a question's family (default: detailed)")
    args = parser.parse_args(argv)
    report = check(args.root, tuple(args.splits), family_field=args.family_field)
    print(f"spatial features: {report['images']:,} images in {report['shards']} shards, "
          f"rows {tuple(report['row_shape'])}")
    print(f"training vocabulary: {report['tokens']:,} tokens, {report['answers']:,} answers, "
          f"{report['families']} families (types.{args.family_field}), types {', '.join(report['types'])}")
    for split, counts in report["splits"].items():
        unknown = counts["unknown"]
        print(f"{split}: {counts['questions']:,} questions about {counts['images']:,} images, longest "
              f"{counts['longest']} tokens; unseen in training: {unknown['tokens']:,} with an <unk> word, "
              f"{unknown['answers']:,} answers (scored wrong), {unknown['families']:,} families, "
              f"{unknown['types']:,} types")
    return report


if __name__ == "__main__":
    main()
