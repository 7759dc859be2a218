"""Crops of a box (with a little context) and a bounded cache of opened images, for training and scoring."""

from __future__ import annotations

import math
from typing import Sequence

from PIL import Image

from genixer.images import open_rgb


def crop(image: Image.Image, box: Sequence[float], pad_frac: float = 0.1) -> Image.Image:
    """The box (pixel xyxy) grown by ``pad_frac`` of its size on each side, clipped to the image."""
    x0, y0, x1, y1 = (float(v) for v in box)
    pw, ph = pad_frac * (x1 - x0), pad_frac * (y1 - y0)
    W, H = image.size
    l, t = max(0, math.floor(x0 - pw)), max(0, math.floor(y0 - ph))
    r, b = min(W, math.ceil(x1 + pw)), min(H, math.ceil(y1 + ph))
    r, b = max(r, min(W, l + 1)), max(b, min(H, t + 1))  # never empty
    return image.crop((l, t, r, b))


class ImageCache:
    """Opened RGB images by path (a few hundred small PNGs; bounded)."""

    def __init__(self, limit: int = 512):
        self.limit, self.images = limit, {}

    def __call__(self, path: str) -> Image.Image:
        im = self.images.get(path)
        if im is None:
            if len(self.images) >= self.limit:
                self.images.pop(next(iter(self.images)))
            im = open_rgb(path)
            self.images[path] = im
        return im
