"""Mini-CLEVR scenes: CLEVR's vocabularies, objects on a ground plane, spatial relationships.

A scene is a dict in CLEVR's scene schema::

    {"split", "image_index", "image_filename",
     "objects": [{"color", "shape", "size", "material", "3d_coords", "pixel_coords", "rotation"}],
     "relationships": {"left": [[j, ...] for each object i], "right": ..., "front": ..., "behind": ...},
     "directions": {"left": [x, y, z], ...}}

Ground plane: x grows to the right of the camera, y grows away from it (behind), z is up.
The camera looks along +y, so the direction vectors are the axes. As in CLEVR, object j is
in ``relationships[d][i]`` when the step from i to j goes more than ``RELATION_EPS`` along
direction d; the sampler keeps every pair at least ``MIN_GAP`` apart along both ground axes,
so every pair is either left or right of each other and either in front or behind, never
ambiguous. Left and right mirror each other (j left of i exactly when i right of j), and so
do front and behind.
"""
from __future__ import annotations

import math
import random

COLORS = ("gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow")
SHAPES = ("cube", "sphere", "cylinder")
SIZES = ("large", "small")
MATERIALS = ("rubber", "metal")
ATTRIBUTES = {"color": COLORS, "shape": SHAPES, "size": SIZES, "material": MATERIALS}
RELATIONS = ("left", "right", "front", "behind")

DIRECTIONS = {"left": [-1.0, 0.0, 0.0], "right": [1.0, 0.0, 0.0],
              "front": [0.0, -1.0, 0.0], "behind": [0.0, 1.0, 0.0],
              "above": [0.0, 0.0, 1.0], "below": [0.0, 0.0, -1.0]}

PLANE = 3.0                                   # objects stand on x, y in [-PLANE, PLANE]
RADIUS = {"large": 0.8, "small": 0.5}         # ground units; also the height z of the centre
RELATION_EPS = 0.2                            # more than this along a direction counts
MIN_GAP = 0.45                                # every pair at least this far apart in x and in y
MIN_OBJECTS, MAX_OBJECTS = 3, 6
CAMERA = (0.0, -10.0, 6.0)                    # only used for the depth in pixel_coords


def project(x: float, y: float, z: float, image_size: int) -> tuple[float, float, float]:
    """Screen position (u, v) of the ground point under (x, y) and the pixels per ground unit.

    A simple oblique view: the back of the plane is higher up and drawn 30 % smaller.
    Returns (u, v_ground, pixels_per_unit) in pixels of an image ``image_size`` wide and high.
    """
    depth = (y + PLANE) / (2 * PLANE)                      # 0 at the front edge, 1 at the back
    scale = image_size * 0.14 * (1.0 - 0.3 * depth)       # pixels per ground unit
    u = image_size / 2 + x * scale
    v = image_size * (0.93 - 0.6 * depth)
    return u, v, scale


def screen_box(obj: dict, image_size: int) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) pixel box that the drawn object occupies."""
    x, y, z = obj["3d_coords"]
    u, v, scale = project(x, y, z, image_size)
    r = z * scale
    return u - 1.1 * r, v - 2.3 * r, u + 1.1 * r, v + 0.25 * r


def relationships(objects: list[dict], directions: dict | None = None) -> dict[str, list[list[int]]]:
    """For each direction in RELATIONS and each object i, the sorted indices j related to i.

    j is in ``result[d][i]`` when (coords_j - coords_i) . direction_d > RELATION_EPS.
    """
    directions = DIRECTIONS if directions is None else directions
    result = {}
    for name in RELATIONS:
        dx, dy, dz = directions[name]
        rows = []
        for i, a in enumerate(objects):
            ax, ay, az = a["3d_coords"]
            rows.append([j for j, b in enumerate(objects) if j != i and
                         (b["3d_coords"][0] - ax) * dx + (b["3d_coords"][1] - ay) * dy
                         + (b["3d_coords"][2] - az) * dz > RELATION_EPS])
        result[name] = rows
    return result


def _fits(candidate: dict, placed: list[dict], image_size: int) -> bool:
    """Whether the candidate is inside the image, clear of every placed object on screen and
    at least MIN_GAP from each along both ground axes."""
    left, top, right, bottom = screen_box(candidate, image_size)
    if left < 1 or top < 1 or right > image_size - 1 or bottom > image_size - 1:
        return False
    cx, cy, _ = candidate["3d_coords"]
    for other in placed:
        ox, oy, _ = other["3d_coords"]
        if abs(cx - ox) < MIN_GAP or abs(cy - oy) < MIN_GAP:
            return False
        l2, t2, r2, b2 = screen_box(other, image_size)
        if left < r2 + 1 and l2 < right + 1 and top < b2 + 1 and t2 < bottom + 1:
            return False                                   # boxes overlap: one would hide the other
    return True


def sample_objects(rng: random.Random, image_size: int, n_objects: int) -> list[dict] | None:
    """Place ``n_objects`` random objects one by one by rejection; None when they do not fit."""
    placed: list[dict] = []
    for _ in range(n_objects):
        for _attempt in range(60):
            size = rng.choice(SIZES)
            radius = RADIUS[size]
            x = rng.uniform(-PLANE, PLANE)
            y = rng.uniform(-PLANE, PLANE)
            candidate = {"color": rng.choice(COLORS), "shape": rng.choice(SHAPES), "size": size,
                         "material": rng.choice(MATERIALS),
                         "3d_coords": [round(x, 4), round(y, 4), radius],
                         "rotation": round(rng.uniform(0.0, 360.0), 2)}
            if _fits(candidate, placed, image_size):
                placed.append(candidate)
                break
        else:
            return None
    return placed


def make_scene(rng: random.Random, split: str, image_index: int, image_filename: str,
               image_size: int) -> dict:
    """One scene of MIN_OBJECTS..MAX_OBJECTS objects in CLEVR's scene schema."""
    n_objects = rng.randint(MIN_OBJECTS, MAX_OBJECTS)
    objects = None
    while objects is None:                                  # a crowded draw is simply redrawn
        objects = sample_objects(rng, image_size, n_objects)
    for obj in objects:
        x, y, z = obj["3d_coords"]
        u, v, scale = project(x, y, z, image_size)
        depth = math.dist((x, y, z), CAMERA)
        obj["pixel_coords"] = [round(u, 2), round(v - 1.1 * z * scale, 2), round(depth, 4)]
    ordered = [{key: obj[key] for key in ("color", "shape", "size", "material", "3d_coords",
                                          "pixel_coords", "rotation")} for obj in objects]
    return {"split": split, "image_index": image_index, "image_filename": image_filename,
            "objects": ordered, "relationships": relationships(ordered),
            "directions": {k: list(v) for k, v in DIRECTIONS.items()}}
