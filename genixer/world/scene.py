"""Scenes of the shapes world: sampling, rendering and JSON, all deterministic from a seed."""

from __future__ import annotations

import functools
import json
import math
import random
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "star", "diamond")
# Non-uniform priors make POPE's "popular" negatives meaningful (frequent objects).
SHAPE_WEIGHTS = (0.3, 0.25, 0.2, 0.15, 0.1)
COLOURS = {
    "red": (215, 35, 35),
    "green": (30, 160, 50),
    "blue": (35, 75, 225),
    "yellow": (240, 215, 30),
    "purple": (135, 50, 185),
    "orange": (250, 130, 20),
}
COLOUR_WEIGHTS = (0.25, 0.2, 0.2, 0.15, 0.1, 0.1)
SIZES = ("small", "large")
BACKGROUNDS = ("plain", "noise", "gradient", "stripes")


class WorldConfigError(ValueError):
    """A world setting that cannot be satisfied."""


@dataclass(frozen=True)
class WorldConfig:
    image_size: int = 128  # the long side, in pixels
    nonsquare_share: float = 0.25  # share of scenes at 4:3 or 3:4, so box normalisation is exercised
    min_objects: int = 1
    max_objects: int = 5
    small_frac: float = 0.2  # object side as a fraction of the short image side
    large_frac: float = 0.3
    margin: int = 3  # free pixels kept between objects
    heldout_background: str = "stripes"  # never in collect/corpus/bench: the held-out domain

    def validate(self) -> None:
        if not 1 <= self.min_objects <= self.max_objects:
            raise WorldConfigError(f"min_objects={self.min_objects} and max_objects={self.max_objects} must satisfy 1 <= min <= max")
        if self.max_objects > len(SHAPES) * len(COLOURS) * len(SIZES):
            raise WorldConfigError(f"max_objects={self.max_objects} exceeds the {len(SHAPES) * len(COLOURS) * len(SIZES)} distinct objects")
        if self.image_size < 32:
            raise WorldConfigError(f"image_size={self.image_size} is too small (minimum 32)")
        if not 0 < self.small_frac < self.large_frac < 1:
            raise WorldConfigError(f"need 0 < small_frac ({self.small_frac}) < large_frac ({self.large_frac}) < 1")
        if self.heldout_background not in BACKGROUNDS:
            raise WorldConfigError(f"heldout_background={self.heldout_background!r} is not one of {BACKGROUNDS}")
        # Worst case: max_objects large objects in the smallest (non-square) image. Random
        # placement needs free room; past ~45% coverage rejection sampling stalls.
        short = round(self.image_size * 0.75) if self.nonsquare_share > 0 else self.image_size
        side = self.large_frac * short + self.margin
        coverage = self.max_objects * side * side / (self.image_size * short)
        if coverage > 0.45:
            raise WorldConfigError(
                f"max_objects={self.max_objects} large objects (large_frac={self.large_frac}) cover "
                f"{coverage:.0%} of a {self.image_size}x{short} image; at most 45% can be placed. "
                "Lower max_objects or large_frac, or raise image_size."
            )

    def backgrounds(self, split: str) -> tuple[str, ...]:
        if split == "heldout":
            return (self.heldout_background,)
        return tuple(b for b in BACKGROUNDS if b != self.heldout_background)


@dataclass
class Obj:
    shape: str
    colour: str
    size: str
    box: tuple[int, int, int, int]  # pixel xyxy, x1/y1 exclusive

    @property
    def centre(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2)


@dataclass
class Scene:
    image_id: str
    width: int
    height: int
    background: str
    seed: int
    objects: list[Obj] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @staticmethod
    def from_json(text: str | dict) -> "Scene":
        d = json.loads(text) if isinstance(text, str) else dict(text)
        d["objects"] = [Obj(o["shape"], o["colour"], o["size"], tuple(o["box"])) for o in d["objects"]]
        return Scene(**d)


def sample_scene(image_id: str, seed: int, split: str, cfg: WorldConfig) -> Scene:
    rng = random.Random(seed)
    if rng.random() < cfg.nonsquare_share:
        short = round(cfg.image_size * 0.75)
        width, height = (cfg.image_size, short) if rng.random() < 0.5 else (short, cfg.image_size)
    else:
        width = height = cfg.image_size
    scene = Scene(image_id, width, height, rng.choice(cfg.backgrounds(split)), seed)
    n = rng.randint(cfg.min_objects, cfg.max_objects)
    # Random placement can paint itself into a corner; lay the scene out afresh a few times
    # before giving up (validate() keeps the coverage where this succeeds).
    for _layout in range(50):
        scene.objects = _place(rng, n, width, height, cfg)
        if len(scene.objects) == n:
            return scene
    raise WorldConfigError(f"could not place {n} objects in scene {image_id} ({width}x{height}) in 50 layouts; lower max_objects or large_frac")


def _place(rng: random.Random, n: int, width: int, height: int, cfg: WorldConfig) -> list[Obj]:
    objects: list[Obj] = []
    used: set[tuple[str, str, str]] = set()
    for _ in range(n):
        for _attempt in range(100):
            shape = rng.choices(SHAPES, SHAPE_WEIGHTS)[0]
            colour = rng.choices(list(COLOURS), COLOUR_WEIGHTS)[0]
            size = rng.choice(SIZES)
            if (size, colour, shape) in used:  # every object keeps a unique full description
                continue
            side = round((cfg.small_frac if size == "small" else cfg.large_frac) * min(width, height))
            x0, y0 = rng.randint(1, width - side - 1), rng.randint(1, height - side - 1)
            box = (x0, y0, x0 + side, y0 + side)
            m = cfg.margin
            if any(box[0] < o.box[2] + m and o.box[0] < box[2] + m and box[1] < o.box[3] + m and o.box[1] < box[3] + m for o in objects):
                continue
            objects.append(Obj(shape, colour, size, box))
            used.add((size, colour, shape))
            break
        else:
            return objects
    return objects


def _background(scene: Scene) -> Image.Image:
    rng = np.random.default_rng(scene.seed)
    w, h = scene.width, scene.height
    base = np.full((h, w, 3), 200, dtype=np.float32)
    if scene.background == "noise":
        base += rng.normal(0, 14, size=(h, w, 1))
    elif scene.background == "gradient":
        base = base * 0 + np.linspace(150, 235, w, dtype=np.float32)[None, :, None]
    elif scene.background == "stripes":
        base[(np.arange(h) // 6) % 2 == 1, :, :] = 160
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def _polygon(shape: str, box: tuple[int, int, int, int]) -> list[tuple[float, float]] | None:
    x0, y0, x1, y1 = box
    cx, cy, r = (x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2, (x1 - x0 - 1) / 2
    if shape == "triangle":
        return [(cx, y0), (x1 - 1, y1 - 1), (x0, y1 - 1)]
    if shape == "diamond":
        return [(cx, y0), (x1 - 1, cy), (cx, y1 - 1), (x0, cy)]
    if shape == "star":
        pts = []
        for k in range(10):
            rad = r if k % 2 == 0 else r * 0.45
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
        return pts
    return None


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], fill) -> None:
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse((x0, y0, x1 - 1, y1 - 1), fill=fill)
    elif shape == "square":
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=fill)
    else:
        draw.polygon(_polygon(shape, box), fill=fill)


def render(scene: Scene) -> Image.Image:
    img = _background(scene)
    draw = ImageDraw.Draw(img)
    for o in scene.objects:  # in list order: a later object paints over an earlier one
        _draw_shape(draw, o.shape, o.box, COLOURS[o.colour])
    return img


@functools.lru_cache(maxsize=4096)
def _mask(shape: str, box: tuple[int, int, int, int]) -> np.ndarray:
    """The pixels `render` paints for `shape` in `box`, box-relative (drawn by the same code)."""
    x0, y0, x1, y1 = box
    img = Image.new("1", (x1, y1), 0)  # drawn at the true coordinates, so rasterisation is identical
    _draw_shape(ImageDraw.Draw(img), shape, box, 1)
    return np.asarray(img)[y0:y1, x0:x1]


def on_shape(o: Obj, x: float, y: float) -> bool:
    """Whether the pixel holding point (x, y) is painted by `o`'s shape (not merely in its box)."""
    i, j = math.floor(x), math.floor(y)
    x0, y0, x1, y1 = (int(v) for v in o.box)
    return x0 <= i < x1 and y0 <= j < y1 and bool(_mask(o.shape, (x0, y0, x1, y1))[j - y0, i - x0])


def object_at(scene: Scene, x: float, y: float) -> Obj | None:
    """The object seen at point (x, y): the topmost one painted there, i.e. the last drawn."""
    return next((o for o in reversed(scene.objects) if on_shape(o, x, y)), None)
