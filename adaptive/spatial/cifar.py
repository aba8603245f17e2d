"""CIFAR-10 from the official archive, the standard augmentation, and seeded mini-batches.

The data set (Krizhevsky 2009, "Learning Multiple Layers of Features from Tiny Images")
is read from the python version of the archive the user downloaded once,
``cifar-10-python.tar.gz`` (see ``data/README.md``), or from the folder it extracts to,
``cifar-10-batches-py/``. Nothing is downloaded here and nothing is written to disk: the
batches are read straight out of the ``.tar.gz``.

Format of the archive (as published on the data set's page): five training batches
``data_batch_1`` .. ``data_batch_5`` of 10,000 images each, one ``test_batch`` of 10,000,
and ``batches.meta``. Each batch is a pickled dict whose keys are byte strings:
``b"data"`` is a uint8 array (n, 3072) holding, per row, the 1024 red, then 1024 green,
then 1024 blue values of a 32x32 image in row-major order, and ``b"labels"`` a list of n
integers in 0..9. ``batches.meta`` holds the class names under ``b"label_names"``.

The pickles are unpickled with an allow-list (plain containers and numpy arrays only), so
a tampered file cannot run code; the md5 check of the archive comes first anyway.

Augmentation is the one of He et al. (2016, sec. 4.2) used by the SACT CIFAR recipe
(Figurnov et al. 2017): pad 4 pixels with zeros, crop a random 32x32 window, flip
horizontally with probability 1/2, drawn per image from a seeded ``torch.Generator``.
"""
from __future__ import annotations

import codecs
import hashlib
import io
import os
import pickle
import tarfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from ..infra import seeding

OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
OFFICIAL_MD5 = "c58f30108f718f92721af3b95e74349a"
OFFICIAL_SIZE = 170_498_071                 # bytes of the archive (163 MiB)
ARCHIVE_NAME = "cifar-10-python.tar.gz"
FOLDER_NAME = "cifar-10-batches-py"
DEFAULT_DIR = "data/cifar10"                 # where data/README.md puts it, relative to the repo

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
META = "batches.meta"
SPLITS = {"train": TRAIN_BATCHES, "test": TEST_BATCHES}
NUM_CLASSES = 10
IMAGE_SHAPE = (3, 32, 32)

# Per-channel mean and standard deviation of the 50,000 training images, pixel values
# scaled to [0, 1]: the population statistics over all 50,000 x 32 x 32 pixels of each
# channel (these are the widely used constants; ``channel_stats(load_cifar10(d)[0])``
# recomputes them from the archive). Not the often-quoted (0.2023, 0.1994, 0.2010), which
# averages per-image standard deviations instead.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


# ----------------------------------------------------------------------------- locating


def download_command(data_dir: str | os.PathLike) -> str:
    """The shell command that downloads the official archive into ``data_dir``."""
    return f"mkdir -p {data_dir} && curl -L -o {Path(data_dir) / ARCHIVE_NAME} {OFFICIAL_URL}"


def _locate(data_dir: Path) -> tuple[str, Path]:
    """Find the data: ``("archive", path)`` or ``("folder", path)``.

    Looked for, in this order: ``<data_dir>/cifar-10-python.tar.gz``,
    ``<data_dir>/cifar-10-batches-py/`` and ``<data_dir>`` itself holding the batch files.
    The archive comes first because only the archive can be checked against its md5.
    """
    archive = data_dir / ARCHIVE_NAME
    folder = data_dir / FOLDER_NAME
    if archive.is_file():
        return "archive", archive
    if folder.is_dir():
        return "folder", folder
    if (data_dir / TRAIN_BATCHES[0]).is_file() or (data_dir / TEST_BATCHES[0]).is_file():
        return "folder", data_dir
    state = "does not exist" if not data_dir.exists() else "holds none of them"
    raise ValueError(
        f"data_dir={str(data_dir)!r} {state}: looked for the archive {archive}, the extracted "
        f"folder {folder}/ and the batch files {data_dir}/data_batch_1..5, test_batch. "
        f"Download the official archive (163 MiB) with:\n  {download_command(data_dir)}")


_VERIFIED: set[tuple] = set()      # (path, size, mtime_ns, md5) of archives already checked


def _check_md5(archive: Path, expected_md5: str) -> None:
    """Compare the archive's md5 with ``expected_md5``; each unchanged file is hashed once."""
    if not isinstance(expected_md5, str) or len(expected_md5) != 32:
        raise ValueError(f"expected_md5 must be a 32-character hex string or None (skip the "
                         f"check), got {expected_md5!r}")
    stat = archive.stat()
    key = (str(archive.resolve()), stat.st_size, stat.st_mtime_ns, expected_md5.lower())
    if key in _VERIFIED:
        return
    digest = hashlib.md5()
    with open(archive, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    got = digest.hexdigest()
    if got != expected_md5.lower():
        size_note = ""
        if expected_md5.lower() == OFFICIAL_MD5 and stat.st_size != OFFICIAL_SIZE:
            size_note = (f" Its size is {stat.st_size} bytes, the official archive has "
                         f"{OFFICIAL_SIZE} (an interrupted download?).")
        raise ValueError(
            f"md5 mismatch for {archive}: expected {expected_md5.lower()}, got {got}.{size_note} "
            f"Delete it and download it again with:\n  {download_command(archive.parent)}")
    _VERIFIED.add(key)


# ----------------------------------------------------------------------------- unpickling


class _SafeUnpickler(pickle.Unpickler):
    """Unpickle containers and numpy arrays only; any other global is refused."""

    _ALLOWED = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # The official batches were written by numpy 1 ("numpy.core"); numpy 2 writes "numpy._core".
        ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
        ("numpy.core.numeric", "_frombuffer"): np._core.numeric._frombuffer,
        ("numpy._core.numeric", "_frombuffer"): np._core.numeric._frombuffer,
        # Python 3 writes bytes at protocol 2 as _codecs.encode(text, "latin1"): data, not code.
        ("_codecs", "encode"): codecs.encode,
    }

    def find_class(self, module, name):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}") from None


def _unpickle(raw: bytes, where: str) -> dict:
    """Unpickle one member with ``encoding="bytes"`` (the batches were pickled by Python 2)."""
    try:
        obj = _SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as error:       # any malformed pickle: UnpicklingError, EOFError, ...
        raise ValueError(f"{where} is not a readable CIFAR-10 pickle "
                         f"({type(error).__name__}: {error})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{where} must hold a dict, got {type(obj).__name__}")
    return obj


def _read_members(kind: str, path: Path, names: tuple[str, ...]) -> dict[str, dict]:
    """Read and unpickle the named batch files from the archive (one pass) or the folder."""
    found: dict[str, bytes] = {}
    if kind == "folder":
        for name in names:
            member = path / name
            if not member.is_file():
                raise ValueError(f"{member} is missing: the folder {path}/ must hold "
                                 f"{', '.join(names)}; extract the official archive again")
            found[name] = member.read_bytes()
    else:
        wanted = {f"{FOLDER_NAME}/{name}": name for name in names}
        try:
            with tarfile.open(path, mode="r|gz") as tar:          # streaming: one pass
                for info in tar:
                    name = wanted.get(info.name.removeprefix("./"))
                    if name is not None and info.isfile():
                        found[name] = tar.extractfile(info).read()
                        if len(found) == len(names):
                            break
        except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
            raise ValueError(
                f"{path} is truncated or corrupt ({type(error).__name__}: {error}); delete it "
                f"and download it again with:\n  {download_command(path.parent)}") from None
        missing = [f"{FOLDER_NAME}/{name}" for name in names if name not in found]
        if missing:
            raise ValueError(f"{path} lacks the member(s) {', '.join(missing)}; it is not the "
                             f"official CIFAR-10 python archive ({OFFICIAL_URL})")
    return {name: _unpickle(raw, f"{path}: {name}") for name, raw in found.items()}


def _batch_arrays(batch: dict, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Check one batch dict and return its data (n, 3072) uint8 and labels (n,) int64."""
    for key in (b"data", b"labels"):
        if key not in batch:
            raise ValueError(f"{where} lacks the key {key!r}; its keys are {sorted(batch)}")
    data = batch[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * 32 * 32:
        shape = getattr(data, "shape", None)
        raise ValueError(f"{where}: b'data' must be a uint8 array of shape (n, 3072), got "
                         f"{type(data).__name__} of shape {shape} and dtype "
                         f"{getattr(data, 'dtype', None)}")
    labels = np.asarray(batch[b"labels"])
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{where}: b'labels' must hold {data.shape[0]} integers (one per row "
                         f"of b'data'), got shape {labels.shape} and dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError(f"{where}: labels must lie in 0..{NUM_CLASSES - 1}, got "
                         f"{labels.min()}..{labels.max()}")
    return data, labels.astype(np.int64)


# ----------------------------------------------------------------------------- loading


def load_cifar10(data_dir: str | os.PathLike = DEFAULT_DIR, split: str = "train",
                 expected_md5: str | None = OFFICIAL_MD5) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one split of CIFAR-10.

    Args:
        data_dir: folder holding ``cifar-10-python.tar.gz`` or ``cifar-10-batches-py/``.
        split: ``"train"`` (data_batch_1..5, 50,000 images) or ``"test"`` (10,000).
        expected_md5: md5 the archive must have; ``None`` skips the check (tests use tiny
            archives). An extracted folder has no published checksum and is read as it is.
    Returns:
        images: (N, 3, 32, 32) uint8, channels R, G, B;
        labels: (N,) int64 in 0..9, in the order of the batch files.
    Raises:
        ValueError: the data is missing (with the download command), the md5 differs, the
            archive is truncated or corrupt, a member is missing, or a batch is malformed.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(map(repr, SPLITS))}; got {split!r}")
    kind, path = _locate(Path(data_dir))
    if kind == "archive" and expected_md5 is not None:
        _check_md5(path, expected_md5)
    names = SPLITS[split]
    batches = _read_members(kind, path, names)
    datas, labels = zip(*(_batch_arrays(batches[name], f"{path}: {name}") for name in names))
    images = torch.from_numpy(np.concatenate(datas)).reshape(-1, *IMAGE_SHAPE)  # (N, 3, 32, 32)
    return images, torch.from_numpy(np.concatenate(labels))                     # (N,)


def load_class_names(data_dir: str | os.PathLike = DEFAULT_DIR,
                     expected_md5: str | None = OFFICIAL_MD5) -> list[str]:
    """The ten class names of ``batches.meta`` (``"airplane"``, ..., ``"truck"``), label order."""
    kind, path = _locate(Path(data_dir))
    if kind == "archive" and expected_md5 is not None:
        _check_md5(path, expected_md5)
    meta = _read_members(kind, path, (META,))[META]
    names = meta.get(b"label_names")
    if not isinstance(names, list) or len(names) != NUM_CLASSES:
        raise ValueError(f"{path}: {META} must hold a list of {NUM_CLASSES} names under "
                         f"b'label_names', got {names!r:.200}")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


# ----------------------------------------------------------------------------- transforms


def _images(name: str, images: torch.Tensor) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a tensor of shape (N, 3, H, W), got {shape}")
    return images


def augment(images: torch.Tensor, generator: torch.Generator, padding: int = 4,
            flip: bool = True) -> torch.Tensor:
    """Pad with zeros, crop a random window of the original size, flip horizontally at random.

    Per image, the crop offset (dy, dx) is uniform on {0, ..., 2 * padding}^2 (so the content
    moves by -padding..+padding pixels) and the flip happens with probability 1/2; all draws
    come from ``generator``, so the same generator state gives the same batch. Apply it to the
    uint8 images before ``normalize`` (the padding is then black, as in He et al. 2016).

    Args:
        images: (N, 3, H, W), any dtype.
        generator: a CPU ``torch.Generator``.
    Returns:
        (N, 3, H, W), same dtype and device.
    """
    _images("images", images)
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be an integer >= 0, got {padding!r}")
    n, _, h, w = images.shape
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator)   # (N, 2): dy, dx
    flips = torch.rand(n, generator=generator) < 0.5                          # (N,)
    if not flip:
        flips = torch.zeros_like(flips)
    offsets, flips = offsets.to(images.device), flips.to(images.device)
    padded = torch.nn.functional.pad(images, (padding,) * 4)                  # (N, 3, H+2p, W+2p)
    rows = offsets[:, :1] + torch.arange(h, device=images.device)             # (N, H)
    cols = torch.arange(w, device=images.device).expand(n, w)                 # (N, W)
    cols = torch.where(flips[:, None], w - 1 - cols, cols) + offsets[:, 1:]   # mirrored inside
    batch = torch.arange(n, device=images.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (N, H, W, 3)
    return out.permute(0, 3, 1, 2).contiguous()                               # (N, 3, H, W)


def normalize(images: torch.Tensor, mean=CIFAR10_MEAN, std=CIFAR10_STD) -> torch.Tensor:
    """(x / 255 - mean) / std per channel for uint8 input; (x - mean) / std for floats in [0, 1].

    Returns float32 (N, 3, H, W); with the default constants each channel of the CIFAR-10
    training set then has mean 0 and standard deviation 1.
    """
    _images("images", images)
    x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    mean = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation over all pixels of all images, in [0, 1] units.

    ``channel_stats(load_cifar10(d, "train")[0])`` reproduces ``CIFAR10_MEAN`` / ``CIFAR10_STD``.
    """
    _images("images", images)
    total = torch.zeros(3, dtype=torch.float64)
    square = torch.zeros(3, dtype=torch.float64)
    for chunk in images.split(5000):                    # bounded memory for 50,000 images
        x = chunk.double() / (255 if chunk.dtype == torch.uint8 else 1)
        total += x.sum(dim=(0, 2, 3))
        square += (x * x).sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    return mean.float(), (square / count - mean * mean).clamp_min(0).sqrt().float()


def augment_and_normalize(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The training transform of the SACT CIFAR recipe: ``normalize(augment(images))``."""
    return normalize(augment(images, generator))


def normalize_only(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The evaluation transform: ``normalize(images)`` (the generator is ignored)."""
    return normalize(images)


# ----------------------------------------------------------------------------- batching


class Batches:
    """Mini-batches of aligned tensors, in a fresh seeded order every epoch.

    Epoch ``e`` is shuffled (and transformed) by a generator derived from ``(seed, e)``
    only, so a run resumed at epoch ``e`` sees the same batches as an uninterrupted one.

    Args:
        *tensors: tensors with the same first dimension N, e.g. ``images, labels``.
        batch_size: examples per batch.
        seed: integer >= 0.
        shuffle: draw a new permutation every epoch (False: the stored order).
        drop_last: leave out the last, smaller batch.
        transform: ``transform(x, generator)`` applied to each batch of the FIRST tensor,
            e.g. ``augment_and_normalize`` for training, ``normalize_only`` for evaluation.
            A geometric transform moves pixels, so do not use one when other tensors are
            spatial (object masks).

    Iterating a ``Batches`` runs the next epoch; ``epoch(e)`` runs a given one and
    ``stream()`` runs epoch after epoch for step-based schedules.
    """

    def __init__(self, *tensors: torch.Tensor, batch_size: int, seed: int = 0,
                 shuffle: bool = True, drop_last: bool = False,
                 transform: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None):
        if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
            raise ValueError("tensors must be one or more torch.Tensors, e.g. Batches(images, "
                             "labels, batch_size=128)")
        n = tensors[0].shape[0]
        if any(t.shape[0] != n for t in tensors):
            raise ValueError(f"tensors must share their first dimension, got shapes "
                             f"{[tuple(t.shape) for t in tensors]}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        if drop_last and n < batch_size:
            raise ValueError(f"batch_size={batch_size} with drop_last=True leaves no batch "
                             f"of the {n} examples")
        self.tensors, self.batch_size, self.seed = tensors, batch_size, seed
        self.shuffle, self.drop_last, self.transform = shuffle, drop_last, transform
        self.next_epoch = 0

    def __len__(self) -> int:
        n = self.tensors[0].shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def epoch(self, index: int) -> Iterator[tuple[torch.Tensor, ...]]:
        """The batches of epoch ``index``, each a tuple with one slice per tensor."""
        generator = seeding.generator(self.seed, index)
        n = self.tensors[0].shape[0]
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        for b in range(len(self)):
            take = order[b * self.batch_size:(b + 1) * self.batch_size]
            batch = [t[take.to(t.device)] for t in self.tensors]
            if self.transform is not None:
                batch[0] = self.transform(batch[0], generator)
            yield tuple(batch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        index, self.next_epoch = self.next_epoch, self.next_epoch + 1
        return self.epoch(index)

    def stream(self, start_epoch: int = 0) -> Iterator[tuple[torch.Tensor, ...]]:
        """Batches of epoch ``start_epoch``, then the next epoch's, without end."""
        index = start_epoch
        while True:
            yield from self.epoch(index)
            index += 1
