"""Drawing a mini-CLEVR scene in 2D with Pillow.

Each object is drawn where ``scenes.project`` puts it, back to front (painter's order), so
objects nearer the camera are lower in the image and drawn over farther ones:

- cube: a square front face with a lighter top face and a darker side face;
- sphere: a disk, darker towards its rim;
- cylinder: an upright body with an elliptic bottom and a lighter elliptic top;
- size: the screen radius follows the object's radius (large 0.8, small 0.5 ground units);
- material: rubber is flat and matte; metal has a dark rim, a light gradient and a bright
  white highlight (off the centre, so the centre pixel keeps the object's colour), so it
  reads as shiny even at 64 pixels.

The scene's ``rotation`` is kept in the JSON but not drawn (a turned square would read as
a diamond). The picture is drawn ``SUPERSAMPLE`` times larger and shrunk with a box filter, which
anti-aliases the edges.
"""
from __future__ import annotations

from PIL import Image, ImageDraw

from .scenes import project

PALETTE = {"gray": (110, 110, 110), "red": (205, 40, 40), "blue": (40, 80, 225),
           "green": (35, 145, 45), "brown": (135, 82, 35), "purple": (145, 55, 205),
           "cyan": (40, 205, 215), "yellow": (240, 215, 40)}
BACKGROUND_FAR = (150, 150, 146)
BACKGROUND_NEAR = (206, 205, 200)
SUPERSAMPLE = 3


def _mix(color, other, t: float):
    """Linear blend of two RGB colours: t = 0 gives ``color``, t = 1 gives ``other``."""
    return tuple(int(round(c + (o - c) * t)) for c, o in zip(color, other))


def _light(color, t):
    return _mix(color, (255, 255, 255), t)


def _dark(color, t):
    return _mix(color, (0, 0, 0), t)


def _background(size: int) -> Image.Image:
    """A ground plane that brightens towards the camera."""
    column = Image.new("RGB", (1, size))
    for row in range(size):
        column.putpixel((0, row), _mix(BACKGROUND_FAR, BACKGROUND_NEAR, row / max(size - 1, 1)))
    return column.resize((size, size), Image.NEAREST)


def _sphere(draw, u, c, r, color, metal):
    if metal:
        draw.ellipse((u - r, c - r, u + r, c + r), fill=_dark(color, 0.45))
        for k, shade in ((0.88, _dark(color, 0.2)), (0.72, color)):    # darker towards the rim
            rr = r * k
            du = -0.12 * r * (1 - k)
            draw.ellipse((u + du - rr, c + du - rr, u + du + rr, c + du + rr), fill=shade)
        h = 0.3 * r
        draw.ellipse((u - 0.4 * r - h, c - 0.4 * r - h, u - 0.4 * r + h, c - 0.4 * r + h),
                     fill=(255, 255, 255))
    else:
        draw.ellipse((u - r, c - r, u + r, c + r), fill=_dark(color, 0.12))
        rr = 0.9 * r
        draw.ellipse((u - 0.06 * r - rr, c - 0.06 * r - rr, u - 0.06 * r + rr, c - 0.06 * r + rr),
                     fill=color)


def _cube(draw, u, c, r, color, metal):
    half = 0.82 * r                                       # front face half-width
    depth = 0.38 * r                                      # offset of the back edges
    front = (u - half - depth / 2, c - half + depth / 2, u + half - depth / 2, c + half + depth / 2)
    x0, y0, x1, y1 = front
    top = [(x0, y0), (x1, y0), (x1 + depth, y0 - depth), (x0 + depth, y0 - depth)]
    side = [(x1, y0), (x1 + depth, y0 - depth), (x1 + depth, y1 - depth), (x1, y1)]
    draw.polygon(top, fill=_light(color, 0.45 if metal else 0.3))
    draw.polygon(side, fill=_dark(color, 0.45 if metal else 0.25))
    if metal:
        draw.rectangle(front, fill=_dark(color, 0.3))
        inset = 0.18 * half
        draw.rectangle((x0 + inset, y0 + inset, x1 - inset, y1 - inset), fill=_light(color, 0.1))
        w = 0.22 * half
        draw.rectangle((x0 + 0.35 * half, y0 + inset, x0 + 0.35 * half + w, y1 - inset),
                       fill=(255, 255, 255))
    else:
        draw.rectangle(front, fill=color)


def _cylinder(draw, u, c, r, color, metal):
    half = 0.85 * r                                       # body half-width
    cap = 0.35 * r                                        # half-height of the elliptic caps
    top_y, bottom_y = c - r + cap, c + r - cap
    body = _dark(color, 0.3) if metal else color
    draw.ellipse((u - half, bottom_y - cap, u + half, bottom_y + cap), fill=_dark(color, 0.2))
    draw.rectangle((u - half, top_y, u + half, bottom_y), fill=body)
    if metal:
        draw.rectangle((u - 0.7 * half, top_y, u + 0.45 * half, bottom_y), fill=_light(color, 0.1))
        draw.rectangle((u - 0.6 * half, top_y, u - 0.35 * half, bottom_y), fill=(255, 255, 255))
    draw.ellipse((u - half, top_y - cap, u + half, top_y + cap),
                 fill=_light(color, 0.5 if metal else 0.3))


_DRAW = {"cube": _cube, "sphere": _sphere, "cylinder": _cylinder}


def draw_scene(scene: dict, image_size: int) -> Image.Image:
    """The RGB image (image_size x image_size) of a scene dict in CLEVR's schema."""
    big = image_size * SUPERSAMPLE
    image = _background(big)
    draw = ImageDraw.Draw(image)
    objects = sorted(scene["objects"], key=lambda o: -o["3d_coords"][1])      # back to front
    for obj in objects:
        x, y, z = obj["3d_coords"]
        u, v, scale = project(x, y, z, image_size)
        u, v, r = u * SUPERSAMPLE, v * SUPERSAMPLE, z * scale * SUPERSAMPLE     # r: screen radius
        shadow = _mix(BACKGROUND_FAR, BACKGROUND_NEAR, v / big)
        draw.ellipse((u - 1.1 * r, v - 0.25 * r, u + 1.1 * r, v + 0.25 * r), fill=_dark(shadow, 0.25))
        _DRAW[obj["shape"]](draw, u, v - 1.1 * r, r, PALETTE[obj["color"]], obj["material"] == "metal")
    return image.resize((image_size, image_size), Image.BOX)
