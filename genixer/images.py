"""Opening images from outside the project safely: one place that every reader and model input uses.

- **Pixel limit.** An image whose header declares more than `MAX_PIXELS` pixels (default 100
  megapixels, env `GENIXER_MAX_IMAGE_PIXELS`) is refused before anything is decoded, so a
  decompression bomb costs a header read. Pillow's own bomb guard stays on above that.
- **Truncated or corrupt files** raise :class:`ImageError` (Pillow's ``LOAD_TRUNCATED_IMAGES`` is
  left off, so a cut-off JPEG is an error, not a grey band).
- **EXIF orientation** is applied, so width and height are those of the image as it is seen.
- **Any mode becomes RGB**: CMYK, palette, greyscale, alpha, and 16-bit / 32-bit integer images
  (scaled to 8 bits by their range, not clipped).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = int(os.environ.get("GENIXER_MAX_IMAGE_PIXELS", 100_000_000))
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
# EXIF orientations 5-8 turn the image by 90 degrees: width and height swap.
_TRANSPOSED = {5, 6, 7, 8}


class ImageError(ValueError):
    """An image that cannot be used: missing, unreadable, truncated, or too large."""


def _check_pixels(im: Image.Image, where: str, max_pixels: int) -> None:
    w, h = im.size
    if w <= 0 or h <= 0:
        raise ImageError(f"{where}: empty image ({w}x{h})")
    if w * h > max_pixels:
        raise ImageError(f"{where}: {w}x{h} = {w * h:,} pixels is over the limit of {max_pixels:,} "
                         "(GENIXER_MAX_IMAGE_PIXELS)")


def _open(src, where: str, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # Pillow warns from 89 megapixels, under MAX_PIXELS: the check below is the one that decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(src)
    except Image.DecompressionBombError as e:
        raise ImageError(f"{where}: over Pillow's pixel limit, refused before decoding ({e})") from e
    except UnidentifiedImageError as e:  # Pillow's message only repeats the file's name
        raise ImageError(f"{where}: not a readable image") from e
    except FileNotFoundError as e:
        raise ImageError(f"{where}: no such file") from e
    except OSError as e:
        raise ImageError(f"{where}: cannot open ({e})") from e
    _check_pixels(im, where, max_pixels)
    return im


def oriented_size(im: Image.Image) -> tuple[int, int]:
    """Width and height once the EXIF orientation is applied (from the header, nothing decoded)."""
    w, h = im.size
    try:
        orientation = im.getexif().get(0x0112, 1)
    except Exception:  # a malformed EXIF block: orientation unknown, the pixels as stored
        orientation = 1
    return (h, w) if orientation in _TRANSPOSED else (w, h)


def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB (EXIF orientation not touched here)."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") else max(float(a.max()), 1.0)
        a = np.clip(np.rint(a / hi * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(a, mode="L").convert("RGB")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return im.convert("RGB")


def open_rgb(src: str | Path, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The image at `src` (path or file object), decoded fully, upright and in RGB."""
    where = str(src) if isinstance(src, (str, Path)) else getattr(src, "name", "image")
    im = _open(src, where, max_pixels)
    try:
        with im:
            im.load()
            out = to_rgb(ImageOps.exif_transpose(im))
            out.load()
            return out
    except (OSError, SyntaxError, ValueError) as e:  # truncated data, broken chunks
        raise ImageError(f"{where}: corrupt or truncated ({e})") from e


_SIZES: dict[tuple[str, int, int, int], tuple[int, int]] = {}  # (path, mtime_ns, bytes, max_pixels) -> size


def image_size(src: str | Path, max_pixels: int = MAX_PIXELS, verify: bool = True) -> tuple[int, int]:
    """(width, height) as seen (EXIF applied). With `verify`, the whole image is decoded so a
    truncated or corrupt file is caught here rather than in the middle of training. Without it, a path's
    size is remembered per (path, modification time, byte size): every training run of a process reads
    the same images' headers once."""
    if verify or not isinstance(src, (str, Path)):
        return _read_size(src, max_pixels, verify)
    try:
        st = Path(src).stat()
    except OSError:  # missing or unreadable: the reader's own error
        return _read_size(src, max_pixels, verify)
    key = (str(src), st.st_mtime_ns, st.st_size, max_pixels)
    if key not in _SIZES:
        if len(_SIZES) >= 1_000_000:  # a bound on the memory, not a policy
            _SIZES.clear()
        _SIZES[key] = _read_size(src, max_pixels, verify=False)
    return _SIZES[key]


def _read_size(src: str | Path, max_pixels: int, verify: bool) -> tuple[int, int]:
    where = str(src) if isinstance(src, (str, Path)) else getattr(src, "name", "image")
    im = _open(src, where, max_pixels)
    with im:
        size = oriented_size(im)
        if verify:
            try:
                im.load()
            except (OSError, SyntaxError, ValueError) as e:
                raise ImageError(f"{where}: corrupt or truncated ({e})") from e
    return size
