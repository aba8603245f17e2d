"""Image features in HDF5, one file per split, read lazily.

Format (the same for mini-CLEVR and real CLEVR): an HDF5 file with one dataset named
``features`` of shape (N, C, H, W), float32, where row i holds image ``image_index`` i of the
split. Real CLEVR: ResNet-101 (ImageNet) up to layer3 (conv4) at 224 x 224 gives
(N, 1024, 14, 14), about 0.77 MiB per image. Mini-CLEVR: the images themselves, average-
pooled to (N, 3, grid, grid) in [0, 1]. ``FeatureFile`` opens the file on first use and reads
one row at a time, so a 50 GiB file costs no memory; each DataLoader worker opens its own
handle.

CLI::

    python -m adaptive.clevr.features pixels --images data/mini-clevr/images/train \\
        --out data/mini-clevr/features/train.h5 --grid 32
    python -m adaptive.clevr.features resnet101 --images data/CLEVR_v1.0/images/train \\
        --out data/CLEVR_v1.0/features/train.h5 --batch-size 64 --device cuda
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import torch

from . import scenes
from .questions import is_mini_root

DATASET = "features"
TORCHVISION_PIN = "torchvision==0.28.0"          # the release built against torch 2.13.0
RESNET101_WEIGHTS = "resnet101-63fe2227.pth"     # torchvision's ImageNet weights (V1), as MAC used
RESNET101_URL = f"https://download.pytorch.org/models/{RESNET101_WEIGHTS}"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_INDEX = re.compile(r"_(\d+)\.png$")


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError("reading and writing CLEVR features needs h5py: "
                          ".venv/bin/pip install h5py==3.16.0") from None
    return h5py


def _is_mini(path: Path) -> bool:
    """Whether a features file or images folder belongs to mini-CLEVR (its dataset folder is
    two levels up: <root>/features/<split>.h5, <root>/images/<split>)."""
    path = Path(path)
    return path.name.lower().startswith("miniclevr") or is_mini_root(path.parent.parent)


def how_to_make(h5_path: Path) -> str:
    """The command (or the pointer to one) that writes the features file ``h5_path``."""
    h5_path = Path(h5_path)
    split = h5_path.stem
    root = h5_path.parent.parent
    if _is_mini(h5_path):
        return (f"python -m adaptive.clevr.features pixels --images {root / 'images' / split} "
                f"--out {h5_path} (or regenerate everything: python -m adaptive.clevr.minigen --out {root})")
    return (f"python -m adaptive.clevr.features resnet101 --images {root / 'images' / split} "
            f"--out {h5_path} --device cuda (see data/README.md, section CLEVR)")


class FeatureFile:
    """Lazy rows of an HDF5 ``features`` dataset: ``file[i]`` is a (C, H, W) float32 tensor.

    Only the shape is read when the object is made; the file stays closed until the first
    row is asked for, and a pickled copy (a DataLoader worker) opens its own handle.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.shape = feature_shape(self.path)               # (N, C, H, W)
        self._file = None
        self._rows = None

    def __len__(self) -> int:
        return self.shape[0]

    def _dataset(self):
        if self._rows is None:
            self._file = _h5py().File(self.path, "r")
            self._rows = self._file[DATASET]
        return self._rows

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < self.shape[0]:
            raise IndexError(f"row {index} is outside {self.path} ({self.shape[0]} rows)")
        return torch.from_numpy(np.asarray(self._dataset()[index], dtype=np.float32))   # (C, H, W)

    def rows(self, indices) -> torch.Tensor:
        """(B, C, H, W) for a list of row indices, in the order given."""
        indices = [int(i) for i in indices]
        return torch.stack([self[i] for i in indices]) if indices else torch.empty(0, *self.shape[1:])

    def close(self):
        if self._file is not None:
            self._file.close()
        self._file = self._rows = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_file"] = state["_rows"] = None                 # h5py handles do not pickle
        return state

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def feature_shape(h5_path: str | os.PathLike) -> tuple[int, ...]:
    """The shape of the ``features`` dataset, checked to be 4-D; ValueError otherwise."""
    h5_path = Path(h5_path)
    if not h5_path.is_file():
        raise ValueError(f"features file {h5_path} does not exist; write it with: {how_to_make(h5_path)}")
    h5py = _h5py()
    try:
        with h5py.File(h5_path, "r") as file:
            if DATASET not in file:
                raise ValueError(f"features file {h5_path} has no dataset named {DATASET!r} "
                                 f"(it has {sorted(file.keys())}); rewrite it with: {how_to_make(h5_path)}")
            shape = tuple(int(n) for n in file[DATASET].shape)
    except OSError as error:
        raise ValueError(f"features file {h5_path} is not a readable HDF5 file ({error}); "
                         f"rewrite it with: {how_to_make(h5_path)}") from None
    if len(shape) != 4:
        raise ValueError(f"features file {h5_path}: dataset {DATASET!r} has shape {shape}, "
                         f"{len(shape)}-D; it must be 4-D (N, C, H, W); rewrite it with: "
                         f"{how_to_make(h5_path)}")
    return shape


def check_features(h5_path: str | os.PathLike, questions) -> tuple[int, ...]:
    """Refuse a features file that cannot serve ``questions``; return its (N, C, H, W).

    ``questions``: question dicts (with ``image_index``) or plain image indices. Row i is
    image i, so the file needs more rows than the largest image_index.
    """
    shape = feature_shape(h5_path)
    indices = [q["image_index"] if isinstance(q, dict) else int(q) for q in questions]
    if indices:
        largest = max(indices)
        if shape[0] <= largest:
            raise ValueError(f"features file {h5_path} has {shape[0]} rows but the questions use "
                             f"image_index up to {largest}, so it needs at least {largest + 1} rows "
                             f"(row i = image i); re-extract it for every image with: "
                             f"{how_to_make(Path(h5_path))}")
    return shape


# --------------------------------------------------------------------------------------------
# Writing features


def image_files(images_dir: str | os.PathLike) -> list[Path]:
    """The PNGs of a split ordered by image index (the digits before ``.png``), checked to be
    exactly images 0..N-1 so that row i is image i."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        fix = (f"generate mini-CLEVR with: python -m adaptive.clevr.minigen --out {images_dir.parent.parent}"
               if _is_mini(images_dir) else "unpack CLEVR v1.0 as data/README.md, section CLEVR, says")
        raise ValueError(f"images folder {images_dir} does not exist; {fix}")
    indexed = {}
    for path in images_dir.glob("*.png"):
        match = _INDEX.search(path.name)
        if match:
            indexed[int(match.group(1))] = path
    if not indexed:
        raise ValueError(f"images folder {images_dir} holds no PNG named like <name>_<index>.png")
    missing = sorted(set(range(len(indexed))) - set(indexed))
    if missing:
        raise ValueError(f"images folder {images_dir} has {len(indexed)} images but lacks image index "
                         f"{missing[0]} (indices must run 0..N-1 so that row i is image i)")
    return [indexed[i] for i in range(len(indexed))]


def _create(h5_path: Path, n: int, row_shape: tuple[int, ...], attrs: dict):
    h5_path.parent.mkdir(parents=True, exist_ok=True)
    file = _h5py().File(h5_path, "w")
    rows = file.create_dataset(DATASET, shape=(n, *row_shape), dtype="float32", chunks=(1, *row_shape))
    for key, value in attrs.items():
        rows.attrs[key] = value
    return file, rows


def pixel_grid(image, grid: int) -> np.ndarray:
    """(3, grid, grid) float32 in [0, 1]: the RGB image averaged over grid x grid cells."""
    from PIL import Image
    small = image.convert("RGB").resize((grid, grid), Image.BOX)
    return (np.asarray(small, dtype=np.float32) / 255.0).transpose(2, 0, 1).copy()


def write_pixel_features(images_dir: str | os.PathLike, out_h5: str | os.PathLike, grid: int = 32) -> Path:
    """Mini-CLEVR's features: every image average-pooled to (3, grid, grid); writes (N, 3, grid, grid)."""
    from PIL import Image
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
        raise ValueError(f"grid must be an integer >= 1, got {grid!r}")
    paths = image_files(images_dir)
    out_h5 = Path(out_h5)
    tmp = out_h5.with_name(out_h5.name + ".tmp")
    file, rows = _create(tmp, len(paths), (3, grid, grid),
                         {"source": "pixels", "grid": grid, "images": str(images_dir)})
    with file:
        block = []
        for i, path in enumerate(paths):
            with Image.open(path) as image:
                block.append(pixel_grid(image, grid))
            if len(block) == 256 or i == len(paths) - 1:
                rows[i + 1 - len(block): i + 1] = np.stack(block)              # (b, 3, grid, grid)
                block = []
    tmp.replace(out_h5)
    return out_h5


ATTRIBUTE_CHANNELS = (*(f"color={c}" for c in scenes.COLORS), *(f"shape={c}" for c in scenes.SHAPES),
                      *(f"size={c}" for c in scenes.SIZES), *(f"material={c}" for c in scenes.MATERIALS),
                      "object")


def attribute_grid(scene: dict, image_size: int, grid: int) -> np.ndarray:
    """(16, grid, grid) float32: per cell, the one-hot attributes of the object drawn there.

    Perception solved by construction, the mini-CLEVR counterpart of CLEVR's ImageNet
    ResNet features (which already encode colour, shape and material): each cell whose
    centre falls inside an object's screen box holds that object's colour, shape, size and
    material one-hots and an occupancy flag; nearer objects are drawn over farther ones,
    as in the image. Channels are named in ``ATTRIBUTE_CHANNELS``.
    """
    cells = np.zeros((len(ATTRIBUTE_CHANNELS), grid, grid), dtype=np.float32)
    centres = (np.arange(grid) + 0.5) * image_size / grid                    # (grid,) pixel centres
    for obj in sorted(scene["objects"], key=lambda o: -o["pixel_coords"][2]):   # far to near
        left, top, right, bottom = scenes.screen_box(obj, image_size)
        inside = ((centres[None, :] >= left) & (centres[None, :] <= right)
                  & (centres[:, None] >= top) & (centres[:, None] <= bottom))  # (grid rows v, cols u)
        if not inside.any():                                                  # tiny objects: nearest cell
            inside[min(int(obj["pixel_coords"][1] * grid / image_size), grid - 1),
                   min(int(obj["pixel_coords"][0] * grid / image_size), grid - 1)] = True
        code = np.array([name in (f"color={obj['color']}", f"shape={obj['shape']}", f"size={obj['size']}",
                                  f"material={obj['material']}", "object")
                         for name in ATTRIBUTE_CHANNELS], dtype=np.float32)    # (16,)
        cells[:, inside] = code[:, None]
    return cells


def write_attribute_features(scenes_json: str | os.PathLike, out_h5: str | os.PathLike,
                             image_size: int = 96, grid: int = 16) -> Path:
    """Mini-CLEVR's symbolic features from its scene file: writes (N, 16, grid, grid), row = image_index."""
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
        raise ValueError(f"grid must be an integer >= 1, got {grid!r}")
    scenes_json = Path(scenes_json)
    if not scenes_json.is_file():
        raise ValueError(f"scene file {scenes_json} does not exist; generate mini-CLEVR first: "
                         f"python -m adaptive.clevr.minigen --out <folder>")
    all_scenes = sorted(json.loads(scenes_json.read_text())["scenes"], key=lambda s: s["image_index"])
    out_h5 = Path(out_h5)
    tmp = out_h5.with_name(out_h5.name + ".tmp")
    file, rows = _create(tmp, len(all_scenes), (len(ATTRIBUTE_CHANNELS), grid, grid),
                         {"source": "attributes", "grid": grid, "scenes": str(scenes_json)})
    with file:
        for scene in all_scenes:
            rows[scene["image_index"]] = attribute_grid(scene, image_size, grid)
    tmp.replace(out_h5)
    return out_h5


def _resnet101_stem(weights: str | os.PathLike | None):
    """torchvision's ResNet-101 with ImageNet weights, cut after layer3 (1024 channels, stride 16)."""
    install = (f".venv/bin/pip install {TORCHVISION_PIN}, the release built for torch 2.13.0 (with a CPU-only "
               f"torch add --index-url https://download.pytorch.org/whl/cpu: PyPI's wheel is the CUDA build)")
    try:
        import torchvision
    except ImportError:
        raise ImportError(f"extract_resnet101 needs torchvision, which is not installed: {install}. "
                          f"Mini-CLEVR needs no torchvision.") from None
    except RuntimeError as error:                    # e.g. "operator torchvision::nms does not exist"
        raise ImportError(f"torchvision is installed but does not load with this torch ({error}); "
                          f"install the matching build: {install}") from None
    candidates = [Path(weights)] if weights else [Path(torch.hub.get_dir()) / "checkpoints" / RESNET101_WEIGHTS]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise ValueError(
            f"the ImageNet ResNet-101 weights are missing: looked for {candidates[0]}. Nothing is downloaded "
            f"at run time; fetch {RESNET101_URL} once (e.g. curl -L -o {RESNET101_WEIGHTS} {RESNET101_URL}) "
            f"and put it in {Path(torch.hub.get_dir()) / 'checkpoints'} or pass --weights PATH")
    if path.name == RESNET101_WEIGHTS:                # torchvision names its files by their SHA-256
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if not digest.startswith(RESNET101_WEIGHTS.split("-")[1].split(".")[0]):
            raise ValueError(f"{path} is not torchvision's {RESNET101_WEIGHTS}: its SHA-256 starts with "
                             f"{digest[:8]}; download it again from {RESNET101_URL}")
    model = torchvision.models.resnet101()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return torch.nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool,
                               model.layer1, model.layer2, model.layer3).eval()


class _ImageNetImages(torch.utils.data.Dataset):
    """Image i of a split as (3, 224, 224): RGB resized to 224 x 224 (bicubic), normalised with
    ImageNet statistics. A Dataset so that DataLoader workers decode the PNGs in parallel."""

    def __init__(self, paths: list[Path]):
        self.paths = paths
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        from PIL import Image
        with Image.open(self.paths[index]) as image:
            rgb = image.convert("RGB").resize((224, 224), Image.BICUBIC)
        x = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1)   # (3, 224, 224)
        return (x - self.mean) / self.std


def extract_resnet101(images_dir: str | os.PathLike, out_h5: str | os.PathLike, batch_size: int = 64,
                      device: str = "cuda", weights: str | os.PathLike | None = None,
                      workers: int = 4) -> Path:
    """Real CLEVR's features: ResNet-101 (ImageNet) up to layer3 at 224 x 224 -> (N, 1024, 14, 14).

    torchvision is imported here only; ``weights`` is a local copy of torchvision's
    ``resnet101-63fe2227.pth`` (default: looked up in torch's hub cache). ``workers`` processes
    decode the PNGs. Rows are written in image order as they are computed into
    ``<out_h5>.tmp``, which is renamed to ``out_h5`` when complete.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be an integer >= 0, got {workers!r}")
    stem = _resnet101_stem(weights)
    paths = image_files(images_dir)
    device = torch.device(device)
    stem = stem.to(device)
    images = torch.utils.data.DataLoader(_ImageNetImages(paths), batch_size=batch_size, shuffle=False,
                                         num_workers=workers, pin_memory=device.type == "cuda")
    out_h5 = Path(out_h5)
    tmp = out_h5.with_name(out_h5.name + ".tmp")
    file, rows = _create(tmp, len(paths), (1024, 14, 14),
                         {"source": "resnet101-imagenet-layer3-224", "images": str(images_dir)})
    start, done = time.perf_counter(), 0
    with file, torch.inference_mode():
        for x in images:                                                      # (B, 3, 224, 224)
            y = stem(x.to(device, non_blocking=True))                           # (B, 1024, 14, 14)
            rows[done:done + len(x)] = y.float().cpu().numpy()
            done += len(x)
            if done % (batch_size * 50) < batch_size or done == len(paths):
                print(f"{done}/{len(paths)} images, {time.perf_counter() - start:.0f} s", flush=True)
    tmp.replace(out_h5)
    return out_h5


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m adaptive.clevr.features",
        description="Write a split's image features to HDF5 (dataset 'features', (N, C, H, W)).")
    commands = parser.add_subparsers(dest="command", required=True)
    pixels = commands.add_parser("pixels", help="mini-CLEVR: images average-pooled to (3, grid, grid)")
    pixels.add_argument("--images", required=True, help="folder of <name>_<index>.png")
    pixels.add_argument("--out", required=True, help="HDF5 file to write, e.g. data/mini-clevr/features/train.h5")
    pixels.add_argument("--grid", type=int, default=32)
    attributes = commands.add_parser("attributes", help="mini-CLEVR: per-cell object attributes (16, grid, grid)")
    attributes.add_argument("--scenes", required=True, help="e.g. data/mini-clevr/scenes/miniCLEVR_train_scenes.json")
    attributes.add_argument("--out", required=True, help="HDF5 file to write, e.g. data/mini-clevr/features/train.h5")
    attributes.add_argument("--image-size", type=int, default=96)
    attributes.add_argument("--grid", type=int, default=16)
    resnet = commands.add_parser("resnet101", help="real CLEVR: ResNet-101 layer3 -> (1024, 14, 14)")
    resnet.add_argument("--images", required=True, help="e.g. data/CLEVR_v1.0/images/train")
    resnet.add_argument("--out", required=True, help="e.g. data/CLEVR_v1.0/features/train.h5")
    resnet.add_argument("--batch-size", type=int, default=64)
    resnet.add_argument("--device", default="cuda")
    resnet.add_argument("--weights", default=None, help=f"local {RESNET101_WEIGHTS} (default: torch hub cache)")
    resnet.add_argument("--workers", type=int, default=4, help="processes decoding the PNGs (default 4)")
    args = parser.parse_args(argv)
    if args.command == "pixels":
        path = write_pixel_features(args.images, args.out, args.grid)
    elif args.command == "attributes":
        path = write_attribute_features(args.scenes, args.out, args.image_size, args.grid)
    else:
        path = extract_resnet101(args.images, args.out, args.batch_size, args.device, args.weights, args.workers)
    print(f"wrote {path} with shape {feature_shape(path)}")


if __name__ == "__main__":
    main()
