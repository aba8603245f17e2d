"""The CLEVR question dataset for torch, and a loader that reshuffles every epoch.

``ClevrQuestions[i]`` is an ``Example``:

    tokens   (T,) int64   question token ids, padded with <pad> (0) to the split's longest question
    length   ()   int64   number of real tokens
    features (C, H, W) float32, row ``image_index`` of the split's HDF5 file, read when asked for
    answer   ()   int64   answer id (-1 when the split has no answers, CLEVR's test)
    family   ()   int64   global family id 0..F-1 (-1 when unknown)
    qtype    ()   int64   question type id: the last function of the program (-1 when unknown)

``collate`` stacks examples into a ``Batch`` (tokens cut to the longest question of the
batch). ``make_loader`` gives a DataLoader whose training order is a fresh permutation every
epoch, drawn from (seed, epoch): the same seed gives the same sequence of epochs, and
``loader.sampler.set_epoch(e)`` resumes at epoch e. (A loader that never shuffles shows the
network the same order every epoch.)
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .. import _checks
from ..infra import seeding
from . import features as feature_files
from . import questions as question_files
from .questions import Vocab


class Example(NamedTuple):
    tokens: torch.Tensor        # (T,) int64
    length: torch.Tensor        # () int64
    features: torch.Tensor      # (C, H, W) float32
    answer: torch.Tensor        # () int64
    family: torch.Tensor        # () int64
    qtype: torch.Tensor         # () int64


class Batch(NamedTuple):
    tokens: torch.Tensor        # (B, T) int64, T = longest question in the batch
    lengths: torch.Tensor       # (B,) int64
    features: torch.Tensor      # (B, C, H, W) float32
    answers: torch.Tensor       # (B,) int64
    families: torch.Tensor      # (B,) int64
    qtypes: torch.Tensor        # (B,) int64


def encode_questions(vocab: Vocab, texts: list[str], max_length: int | None, where: str):
    """Questions as token ids padded with <pad> (0): tokens (Q, T) in a compact integer type, T =
    ``max_length`` (None: the longest question), and lengths (Q,) int64. ``where`` names the
    questions' source in the error raised when one is longer than ``max_length``."""
    encoded = [vocab.encode(text) for text in texts]
    longest = max(len(ids) for ids in encoded)
    if max_length is None:
        max_length = longest
    elif _checks.positive_int("max_length", max_length) < longest:
        raise ValueError(f"max_length={max_length} is shorter than the longest question of {where} "
                         f"({longest} tokens); pass max_length >= {longest} or None")
    dtype = torch.int16 if len(vocab.tokens) < 2 ** 15 else torch.int32           # compact storage
    tokens = torch.zeros(len(texts), max_length, dtype=dtype)                      # (Q, T), 0 = <pad>
    for row, ids in enumerate(encoded):
        tokens[row, :len(ids)] = torch.tensor(ids, dtype=dtype)
    return tokens, torch.tensor([len(ids) for ids in encoded], dtype=torch.int64)


class ClevrQuestions(Dataset):
    """Questions of one split with their image features (mini-CLEVR or CLEVR v1.0).

    The questions are encoded once (a few bytes each); the features stay on disk and are read
    one row per example. ``check_features`` refuses a features file that lacks images.
    """

    def __init__(self, questions_path: str | os.PathLike, features_path: str | os.PathLike, vocab: Vocab,
                 max_length: int | None = None):
        info, items = question_files.read_questions(questions_path)
        if not items:
            raise ValueError(f"questions file {questions_path} holds no questions")
        self.questions_path = Path(questions_path)
        self.split = info.get("split", items[0].get("split", "?"))
        feature_files.check_features(features_path, items)
        self.features = feature_files.FeatureFile(features_path)
        self.tokens, self.lengths = encode_questions(vocab, [q["question"] for q in items], max_length,
                                                     str(questions_path))             # (Q, T), (Q,)
        labels = torch.tensor([vocab.labels(q) for q in items], dtype=torch.int64)  # (Q, 3)
        self.answers, self.families, self.qtypes = labels.unbind(1)                # (Q,) each
        self.image_index = torch.tensor([q["image_index"] for q in items], dtype=torch.int64)
        self.vocab = vocab

    @classmethod
    def from_root(cls, root: str | os.PathLike, split: str, vocab: Vocab | None = None,
                  max_length: int | None = None) -> ClevrQuestions:
        """The split of a dataset folder: ``<root>/questions/...``, ``<root>/features/<split>.h5``;
        the vocabulary defaults to ``questions.vocab_for(root)`` (train split)."""
        vocab = question_files.vocab_for(root) if vocab is None else vocab
        return cls(question_files.questions_file(root, split), Path(root) / "features" / f"{split}.h5",
                   vocab, max_length)

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> Example:
        return Example(self.tokens[index].long(), self.lengths[index],
                       self.features[int(self.image_index[index])],
                       self.answers[index], self.families[index], self.qtypes[index])


def collate(examples: list[Example]) -> Batch:
    """Stack examples into a Batch; tokens are cut to the longest question in the batch."""
    lengths = torch.stack([e.length for e in examples])                            # (B,)
    longest = int(lengths.max())
    return Batch(torch.stack([e.tokens[:longest] for e in examples]), lengths,
                 torch.stack([e.features for e in examples]),
                 torch.stack([e.answer for e in examples]), torch.stack([e.family for e in examples]),
                 torch.stack([e.qtype for e in examples]))


class EpochShuffle(Sampler[int]):
    """A new permutation of 0..n-1 every epoch, a function of (seed, epoch) only.

    Each pass over the sampler is one epoch and advances ``epoch``; ``set_epoch`` sets it
    (to resume a run or to replay an epoch).
    """

    def __init__(self, n: int, seed: int = 0):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n (number of examples) must be an integer >= 1, got {n!r}")
        self.n, self.seed, self.epoch = n, int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def permutation(self, epoch: int) -> torch.Tensor:
        """(n,) int64: the order of epoch ``epoch``."""
        return torch.randperm(self.n, generator=seeding.generator(self.seed, epoch))

    def __iter__(self):
        order = self.permutation(self.epoch)
        self.epoch += 1
        return iter(order.tolist())

    def __len__(self) -> int:
        return self.n


def make_loader(dataset: ClevrQuestions, batch_size: int = 64, shuffle: bool = True, seed: int = 0,
                num_workers: int = 0, drop_last: bool = False) -> DataLoader:
    """A DataLoader of Batches: shuffled afresh every epoch from ``seed`` (training) or in file
    order (``shuffle=False``, evaluation)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    sampler = EpochShuffle(len(dataset), seed) if shuffle else None
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False,
                      num_workers=num_workers, collate_fn=collate, drop_last=drop_last,
                      persistent_workers=False)


class ShardedEpochShuffle(Sampler[int]):
    """This rank's share of ``EpochShuffle``'s permutation of each epoch.

    Each epoch, every rank draws the same permutation of 0..n-1 from (seed, epoch), pads it
    with its own first entries to a multiple of ``world`` (so every rank gets as many
    examples, hence as many batches: data-parallel training needs every rank at every
    gradient synchronisation), and keeps entries rank, rank + world, .... With ``world`` = 1
    it yields exactly ``EpochShuffle``'s order. ``set_epoch(e)`` selects epoch e.
    """

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1):
        if isinstance(world, bool) or not isinstance(world, int) or world < 1:
            raise ValueError(f"world must be an integer >= 1, got {world!r}")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world:
            raise ValueError(f"rank must be an integer in 0..{world - 1}, got {rank!r}")
        self.order = EpochShuffle(n, seed)
        self.rank, self.world = rank, world
        self.per_rank = -(-n // world)                       # ceil(n / world)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def indices(self, epoch: int) -> list[int]:
        """This rank's examples in epoch ``epoch``, in order."""
        order = self.order.permutation(epoch)                # (n,)
        total = self.per_rank * self.world
        if total > len(order):
            order = order.repeat(-(-total // len(order)))[:total]
        return order[self.rank::self.world].tolist()

    def __iter__(self):
        indices = self.indices(self.epoch)
        self.epoch += 1
        return iter(indices)

    def __len__(self) -> int:
        return self.per_rank
