"""The world's per-patch labels for the dense vision pre-stage (:mod:`genixer.patch_labels` trains on them):
each patch is labelled with the colour, shape and size of the object whose box holds the patch centre (or
"none"), and with that object's normalised box."""

from __future__ import annotations

import numpy as np

from genixer.world.scene import COLOURS, SHAPES, SIZES, Scene

HEADS = {"colour": ("none", *COLOURS), "shape": ("none", *SHAPES), "size": ("none", *SIZES)}


def patch_labels(scene: Scene, grid: int) -> dict[str, np.ndarray]:
    """Per-patch targets for a `grid` x `grid` patching of the whole image (resized, not cropped):
    attribute class ids (0 = no object) and the covering object's box in [0, 1] (NaN where none)."""
    out = {k: np.zeros((grid, grid), dtype=np.int64) for k in HEADS}
    box = np.full((grid, grid, 4), np.nan, dtype=np.float32)
    cx = (np.arange(grid) + 0.5) / grid * scene.width
    cy = (np.arange(grid) + 0.5) / grid * scene.height
    for o in scene.objects:
        x0, y0, x1, y1 = o.box
        cols = np.nonzero((cx >= x0) & (cx < x1))[0]
        rows = np.nonzero((cy >= y0) & (cy < y1))[0]
        if not len(cols) or not len(rows):  # an object smaller than a patch: label the patch holding its centre
            mx, my = o.centre
            cols = np.array([min(int(mx / scene.width * grid), grid - 1)])
            rows = np.array([min(int(my / scene.height * grid), grid - 1)])
        sel = np.ix_(rows, cols)
        for k, value in (("colour", o.colour), ("shape", o.shape), ("size", o.size)):
            out[k][sel] = HEADS[k].index(value)
        box[sel] = (x0 / scene.width, y0 / scene.height, x1 / scene.width, y1 / scene.height)
    return {**{k: v.reshape(-1) for k, v in out.items()}, "box": box.reshape(-1, 4)}


class ScenePatchLabels:
    """The labeller :func:`genixer.patch_labels.pretrain_tower` takes: the heads (attribute -> class names, 0 = no
    object), the image-row fields a training record carries (the scene graph) and the labels of one record."""

    heads = HEADS
    fields = ("scene",)

    def __call__(self, row: dict, grid: int) -> dict[str, np.ndarray]:
        return patch_labels(Scene.from_json(row["scene"]), grid)


PATCH_LABELS = ScenePatchLabels()
