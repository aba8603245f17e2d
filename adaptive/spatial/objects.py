"""Generated images with one small object on clutter: the CPU default of the spatial chapter.

Spatially adaptive computation (SACT, Figurnov et al. 2017) lets a residual network spend
more units on some image positions than on others. That is only meaningful when the
evidence for the answer sits in a small part of the image. Each image here is 32x32 RGB with
exactly one object, 7 to 10 pixels across, of one of six shapes (``CLASSES``), at a random
position on a cluttered background:

* a smooth background: a linear gradient between two random colours in a random direction
  plus a low-frequency colour wave;
* two to four distractor strokes: straight lines one pixel wide, 6 to 16 pixels long, at
  random angles, which are never class objects (the thinnest class object, the bar, is
  three pixels wide);
* the object, painted over the strokes;
* Gaussian pixel noise (standard deviation 0.02 to 0.06), then clipping to [0, 1].

The label is the object's shape and nothing else: its colour, size range and position are
drawn the same way for every class. Object and strokes get their colour the same way too,
by moving each channel of the background colour under them 0.2 to 0.45 away (up or down at
random, whichever stays inside [0, 1]), so contrast alone does not tell an object from
clutter.

Every example is a function of ``(seed, index)``: examples are made in blocks of ``BLOCK``
from a generator seeded by ``(seed, block)``, and each block holds every class exactly
``BLOCK / 6`` times. So ``generate(n, seed)`` is a prefix of ``generate(2 * n, seed)`` and
``generate(m, seed, start=k)`` is the slice ``k:k+m`` of a longer set.

``object_coverage`` scores a ponder-cost map against the object masks; see its docstring.
``total_ponder_map`` sums the maps of a network's blocks into the one map the SACT paper draws.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ..infra import seeding

CLASSES = ("square", "ring", "cross", "triangle", "disk", "bar")
NUM_CLASSES = len(CLASSES)
SIZE = 32                         # images are SIZE x SIZE
BLOCK = 64 * NUM_CLASSES          # examples per seeded block; a multiple of NUM_CLASSES
MIN_OBJECT, MAX_OBJECT = 7.0, 10.0   # object extent in pixels (bounding square of the shape)
MAX_STROKES = 4
STROKE_SAMPLES = 33             # points per stroke: 16 px / 32 gaps = 0.5 px apart


class SpatialObjects(NamedTuple):
    """A generated set; unpacks as ``images, labels, masks, boxes``."""

    images: torch.Tensor   # (N, 3, 32, 32) float32 in [0, 1]
    labels: torch.Tensor   # (N,) int64 in 0..5, index into CLASSES
    masks: torch.Tensor    # (N, 32, 32) bool, True on the object's pixels
    boxes: torch.Tensor    # (N, 4) int64 (x0, y0, x1, y1): mask[i, y0:y1, x0:x1] holds the object


def _int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def generate(n: int, seed: int = 0, *, start: int = 0, draw_objects: bool = True) -> SpatialObjects:
    """Examples ``start .. start + n - 1`` of the generated set with this ``seed``.

    Args:
        n: number of examples (>= 1).
        seed: integer >= 0. For a train/test split use two seeds, or disjoint index ranges
            of one seed (``generate(n_train, s)`` and ``generate(n_test, s, start=n_train)``).
        start: index of the first example.
        draw_objects: False gives the very same backgrounds, strokes and noise without the
            objects (labels, masks and boxes still describe the object that was left out):
            a control where nothing should attract computation.
    Returns:
        ``SpatialObjects(images, labels, masks, boxes)``, see its fields. 10,000 examples
        take one to two seconds on one CPU core (about 120 MiB of float32 images).
    """
    n, seed, start = _int("n", n, 1), _int("seed", seed, 0), _int("start", start, 0)
    first, last = start // BLOCK, (start + n - 1) // BLOCK
    parts = [_block(seed, b, draw_objects) for b in range(first, last + 1)]
    offset = start - first * BLOCK
    return SpatialObjects(*(torch.cat(field)[offset:offset + n] for field in zip(*parts)))


# ----------------------------------------------------------------------------- drawing


def _uniform(shape, low: float, high: float, g: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=g)


def _contrasting(base: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """(..., 3) colours 0.2-0.45 away from ``base`` in every channel, up or down at random."""
    delta = _uniform(base.shape, 0.2, 0.45, g)
    sign = torch.where(torch.rand(base.shape, generator=g) < 0.5, -1.0, 1.0)
    colour = base + sign * delta
    flipped = base - sign * delta                      # the other direction, used when needed
    return torch.where((colour < 0) | (colour > 1), flipped, colour)


def _colour_at(image: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B, K, 3) colour of ``image`` (B, 3, H, W) at the pixels holding points x, y (B, K)."""
    col = x.floor().long().clamp(0, SIZE - 1)
    row = y.floor().long().clamp(0, SIZE - 1)
    index = (row * SIZE + col).unsqueeze(1).expand(-1, 3, -1)          # (B, 3, K)
    return image.flatten(2).gather(2, index).transpose(1, 2)           # (B, K, 3)


def _background(b: int, g: torch.Generator, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """(B, 3, 32, 32) smooth colour fields in [0.05, 0.95]."""
    c0, c1 = _uniform((b, 3, 1, 1), 0.1, 0.9, g), _uniform((b, 3, 1, 1), 0.1, 0.9, g)
    angle = _uniform((b, 1, 1, 1), 0, 2 * torch.pi, g)
    half = SIZE / 2
    t = ((xs - half) * angle.cos() + (ys - half) * angle.sin()) / (half * 2 ** 0.5) / 2 + 0.5
    amplitude = _uniform((b, 3, 1, 1), 0.0, 0.15, g)                    # per channel
    frequency = _uniform((b, 1, 1, 1), 0.1, 0.35, g)                   # radians per pixel
    direction = _uniform((b, 1, 1, 1), 0, 2 * torch.pi, g)
    phase = _uniform((b, 3, 1, 1), 0, 2 * torch.pi, g)
    wave = amplitude * torch.sin(frequency * (xs * direction.cos() + ys * direction.sin()) + phase)
    return (c0 + (c1 - c0) * t + wave).clamp(0.05, 0.95)


def _strokes(image: torch.Tensor, g: torch.Generator) -> None:
    """Paint 2..MAX_STROKES thin straight lines into ``image`` (B, 3, 32, 32), in place.

    A stroke is rasterised by marking the pixel under each of ``STROKE_SAMPLES`` points
    spaced evenly along the segment (at most half a pixel apart): a connected staircase
    about one pixel wide.
    """
    b = image.shape[0]
    count = torch.randint(2, MAX_STROKES + 1, (b, 1), generator=g)
    active = torch.arange(MAX_STROKES) < count                          # (B, S)
    ax, ay = _uniform((b, MAX_STROKES), 0, SIZE, g), _uniform((b, MAX_STROKES), 0, SIZE, g)
    angle = _uniform((b, MAX_STROKES), 0, 2 * torch.pi, g)
    length = _uniform((b, MAX_STROKES), 6.0, 16.0, g)
    dx, dy = length * angle.cos(), length * angle.sin()                 # (B, S)
    colour = _contrasting(_colour_at(image, ax + dx / 2, ay + dy / 2), g)   # (B, S, 3)
    t = torch.linspace(0, 1, STROKE_SAMPLES)
    x = ax[..., None] + dx[..., None] * t                               # (B, S, T)
    y = ay[..., None] + dy[..., None] * t
    keep = (x >= 0) & (x < SIZE) & (y >= 0) & (y < SIZE) & active[..., None]
    pixel = y.floor().long().clamp(0, SIZE - 1) * SIZE + x.floor().long().clamp(0, SIZE - 1)
    pixel = torch.where(keep, pixel, SIZE * SIZE)                       # dropped points: a spare slot
    on_stroke = torch.zeros(b, MAX_STROKES, SIZE * SIZE + 1, dtype=torch.bool)
    on_stroke.scatter_(2, pixel, True)
    on_stroke = on_stroke[..., :-1].reshape(b, MAX_STROKES, SIZE, SIZE)  # (B, S, 32, 32)
    for s in range(MAX_STROKES):                                        # later strokes on top
        image.copy_(torch.where(on_stroke[:, s, None], colour[:, s, :, None, None], image))


def _shapes(u: torch.Tensor, v: torch.Tensor, pixel: torch.Tensor, vertical: torch.Tensor):
    """(K, B, 32, 32) masks of every class, in coordinates scaled so the shape spans [-1, 1].

    ``pixel`` (B, 1, 1) is the length of one pixel in these units; ``vertical`` (B, 1, 1)
    turns the bar upright.
    """
    radius = torch.hypot(u, v)
    au, av = u.abs(), v.abs()
    long_axis, short_axis = torch.where(vertical, av, au), torch.where(vertical, au, av)
    arm = 1.1 * pixel                                                   # half-width of the cross arms
    return torch.stack([
        torch.maximum(au, av) <= 1,                                     # square
        (radius <= 1) & (radius >= 1 - 1.8 * pixel),                    # ring, ~1.8 px thick
        ((au <= arm) & (av <= 1)) | ((av <= arm) & (au <= 1)),          # cross
        (v <= 1) & (au <= (v + 1) / 2),                                 # triangle, apex up
        radius <= 1,                                                    # disk
        (long_axis <= 1) & (short_axis <= 1.5 * pixel),                 # bar, 3 px wide
    ])


def _boxes(masks: torch.Tensor) -> torch.Tensor:
    """(B, 4) int64 (x0, y0, x1, y1), half-open, of non-empty masks (B, H, W)."""
    rows, cols = masks.any(dim=2), masks.any(dim=1)                     # (B, H), (B, W)

    def span(hit):
        first = hit.int().argmax(dim=1)
        last = hit.shape[1] - hit.flip(1).int().argmax(dim=1)
        return first, last

    y0, y1 = span(rows)
    x0, x1 = span(cols)
    return torch.stack([x0, y0, x1, y1], dim=1).long()


def _block(seed: int, block: int, draw_objects: bool) -> SpatialObjects:
    """The BLOCK examples of one block; the random draws never depend on ``draw_objects``."""
    g = seeding.generator(seed, block)
    b = BLOCK
    centres = torch.arange(SIZE, dtype=torch.float32) + 0.5
    ys, xs = torch.meshgrid(centres, centres, indexing="ij")            # (32, 32) pixel centres
    labels = (torch.arange(b) % NUM_CLASSES)[torch.randperm(b, generator=g)]

    background = _background(b, g, xs, ys)                              # (B, 3, 32, 32)
    image = background.clone()
    _strokes(image, g)

    size = _uniform((b,), MIN_OBJECT, MAX_OBJECT, g)
    half = size / 2
    cx = half + 0.5 + (SIZE - 1 - 2 * half) * torch.rand(b, generator=g)   # whole object inside
    cy = half + 0.5 + (SIZE - 1 - 2 * half) * torch.rand(b, generator=g)
    vertical = (torch.rand(b, generator=g) < 0.5).view(b, 1, 1)
    colour = _contrasting(_colour_at(background, cx[:, None], cy[:, None])[:, 0], g)  # (B, 3)
    h = half.view(b, 1, 1)
    u, v = (xs - cx.view(b, 1, 1)) / h, (ys - cy.view(b, 1, 1)) / h     # (B, 32, 32)
    masks = _shapes(u, v, 1 / h, vertical)[labels, torch.arange(b)]     # (B, 32, 32)
    if draw_objects:
        image = torch.where(masks[:, None], colour[:, :, None, None], image)

    noise = _uniform((b, 1, 1, 1), 0.02, 0.06, g) * torch.randn(image.shape, generator=g)
    images = (image + noise).clamp(0, 1)
    return SpatialObjects(images, labels, masks, _boxes(masks))


# ----------------------------------------------------------------------------- scoring


class Coverage(NamedTuple):
    """How well a ponder map singles out the objects; see ``object_coverage``."""

    ratio: float                  # mean ponder on object cells / mean ponder on background cells
    auc: float                    # mean over images of the per-image ROC AUC
    auc_per_image: torch.Tensor   # (N,) float64; NaN where an image lacks object or background cells
    object_cells: torch.Tensor    # (N, H', W') bool, the downsampled masks that were scored


def _check_masks(masks) -> None:
    if not isinstance(masks, torch.Tensor) or masks.dim() != 3 or masks.dtype != torch.bool:
        what = (f"shape {tuple(masks.shape)} and dtype {masks.dtype}"
                if isinstance(masks, torch.Tensor) else type(masks).__name__)
        raise ValueError(f"masks must be a bool tensor of shape (N, H, W), got {what}")


def downsample_mask(masks: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, H, W) bool -> (N, height, width) bool: a cell is True when any object pixel is in it.

    "Any" rather than "most" because a position whose cell touches the object sees it; at
    8x8 (cells of 4x4 pixels) an object touches 2 to 16 of the 64 cells, 6.5 on average.
    """
    _check_masks(masks)
    n, h, w = masks.shape
    if not all(isinstance(k, int) and k >= 1 for k in (height, width)) or h % height or w % width:
        raise ValueError(f"the ponder map's size {height}x{width} must divide the mask size "
                         f"{h}x{w} (e.g. 32, 16, 8, 4 for 32x32 images)")
    cells = masks.reshape(n, height, h // height, width, w // width)
    return cells.any(dim=4).any(dim=2)


def total_ponder_map(block_maps: list[torch.Tensor], height: int = SIZE, width: int = SIZE) -> torch.Tensor:
    """The total ponder cost of every position: the map SACT draws (Figurnov et al. 2017, Figs. 1 and 9).

    Each block's map is brought up to ``height`` x ``width`` by repeating each of its cells
    (a cell of the 8x8 map covers 4x4 pixels of a 32x32 image), then the maps are summed.

    Args:
        block_maps: one (N, H_b, W_b) floating map per block, e.g. ``evaluate(..., keep_maps=True)``'s
            ``"ponder_maps"``; each H_b, W_b must divide ``height``, ``width``.
    Returns:
        (N, height, width): per position, the residual units run summed over the blocks.
    """
    if not isinstance(block_maps, (list, tuple)) or not block_maps:
        raise ValueError(f"block_maps must be a non-empty list of (N, H, W) maps, got {type(block_maps).__name__}")
    total = 0
    for block, ponder in enumerate(block_maps):
        if not isinstance(ponder, torch.Tensor) or ponder.dim() != 3 or ponder.shape[0] != block_maps[0].shape[0] \
                or height % ponder.shape[1] or width % ponder.shape[2]:
            what = tuple(ponder.shape) if isinstance(ponder, torch.Tensor) else type(ponder).__name__
            raise ValueError(f"block_maps[{block}] must be an (N, H, W) map with N = {block_maps[0].shape[0]} and H, W "
                             f"dividing {height}x{width}, got {what}")
        rows, columns = height // ponder.shape[1], width // ponder.shape[2]
        total = total + ponder.repeat_interleave(rows, dim=1).repeat_interleave(columns, dim=2)  # (N, height, width)
    return total


def object_coverage(ponder_map: torch.Tensor, masks: torch.Tensor) -> Coverage:
    """Score a ponder-cost map against the object masks.

    The masks are first brought to the map's resolution (``downsample_mask``: a cell is an
    object cell when any object pixel falls in it). Then:

    * ``ratio``: the mean ponder cost over all object cells of all images divided by the mean
      over all background cells. 1 means no preference; > 1 means more computation on the
      objects. (``inf`` when the background gets exactly zero.)
    * ``auc``: within each image, the probability that a randomly chosen object cell has a
      higher ponder cost than a randomly chosen background cell, ties counting one half
      (the ROC AUC, computed as the Mann-Whitney U statistic from average ranks); averaged
      over the images where both kinds of cell exist. 1: every object cell ponders more than
      every background cell; 0.5: no relation (or a constant map); 0: the reverse. Scoring
      within an image makes the AUC blind to how much an image ponders overall.

    Args:
        ponder_map: (N, H', W') floating, e.g. SACT's per-position ponder cost of one block;
            H' and W' must divide the mask size (32x32 maps, 16x16, 8x8, ...).
        masks: (N, H, W) bool, e.g. ``generate(...).masks``.
    Returns:
        ``Coverage(ratio, auc, auc_per_image, object_cells)``.
    """
    if not isinstance(ponder_map, torch.Tensor) or ponder_map.dim() != 3 \
            or not ponder_map.is_floating_point():
        what = (f"shape {tuple(ponder_map.shape)} and dtype {ponder_map.dtype}"
                if isinstance(ponder_map, torch.Tensor) else type(ponder_map).__name__)
        raise ValueError(f"ponder_map must be a floating tensor of shape (N, H', W'), got {what}")
    _check_masks(masks)
    if ponder_map.shape[0] != masks.shape[0]:
        raise ValueError(f"ponder_map and masks must hold the same number of images, got "
                         f"shapes {tuple(ponder_map.shape)} and {tuple(masks.shape)}")
    if torch.isnan(ponder_map).any():
        raise ValueError("ponder_map contains NaN")
    n, height, width = ponder_map.shape
    cells = downsample_mask(masks.cpu(), height, width)                 # (N, H', W')
    p = ponder_map.detach().cpu().double().reshape(n, -1)               # (N, M)
    m = cells.reshape(n, -1)                                            # (N, M)

    inside, outside = p[m], p[~m]
    ratio = (inside.mean() / outside.mean()).item() if inside.numel() and outside.numel() \
        else float("nan")

    # average ranks (1-based) within each image: ranks lo+1 .. hi are shared by ties
    ordered = p.sort(dim=1).values
    lo = torch.searchsorted(ordered, p, right=False)
    hi = torch.searchsorted(ordered, p, right=True)
    ranks = (lo + hi + 1).double() / 2                                  # (N, M)
    positives = m.sum(dim=1).double()
    negatives = m.shape[1] - positives
    u_stat = (ranks * m).sum(dim=1) - positives * (positives + 1) / 2
    valid = (positives > 0) & (negatives > 0)
    auc_per_image = torch.where(valid, u_stat / (positives * negatives).clamp_min(1),
                                torch.full_like(u_stat, float("nan")))
    if not valid.any():
        raise ValueError(f"at {height}x{width} no image has both object and background cells; "
                         f"use a finer ponder_map (e.g. 8x8 or 16x16)")
    return Coverage(ratio, auc_per_image[valid].mean().item(), auc_per_image, cells)
