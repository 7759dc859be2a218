"""genixer.images: the one safe way in for images from outside (limits, corruption, EXIF, modes)."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from genixer.images import ImageError, image_size, open_rgb


def _png_header(path, w, h):
    """A PNG that declares w x h pixels and holds none: what a decompression bomb's header costs."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return path


def _noise_jpeg(path, size=(64, 48)):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, quality=95)
    return path


def test_truncated_jpeg_is_an_error_once_decoded(tmp_path):
    p = _noise_jpeg(tmp_path / "cut.jpg")
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(ImageError, match="cut.jpg: corrupt or truncated"):
        open_rgb(p)
    with pytest.raises(ImageError, match="corrupt or truncated"):
        image_size(p)
    assert image_size(p, verify=False) == (64, 48)  # the header alone is intact


def test_corrupt_and_missing_files(tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not a picture" * 10)
    with pytest.raises(ImageError, match="junk.png: not a readable image"):
        open_rgb(junk)
    with pytest.raises(ImageError, match="not a readable image"):
        image_size(junk, verify=False)
    with pytest.raises(ImageError, match="no such file"):
        open_rgb(tmp_path / "absent.jpg")


def test_over_the_pixel_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    """Refused from the header: no decoder runs (Pillow decodes in ImageFile.load, spied on here). How long a refusal
    takes is measured by `make bench` (bench/run.py), not asserted here."""
    big = _png_header(tmp_path / "bomb.png", 20000, 20000)
    cheap = tmp_path / "paletted.png"  # 9 megapixels of one colour: a few kB on disk
    Image.new("P", (3000, 3000), 0).save(cheap)
    decoded = []
    load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda im: decoded.append(im.size) or load(im))
    for max_pixels in (10_000, 500_000_000):  # ours, then Pillow's own guard (2 x 89 megapixels)
        with pytest.raises(ImageError, match="limit"):
            open_rgb(big, max_pixels=max_pixels)
    with pytest.raises(ImageError, match=r"3000x3000 = 9,000,000 pixels is over the limit of 1,000,000"):
        open_rgb(cheap, max_pixels=1_000_000)
    assert decoded == []
    assert open_rgb(cheap, max_pixels=10_000_000).size == (3000, 3000) and (3000, 3000) in decoded  # the spy sees a decode


def test_between_pillows_warning_and_our_limit_is_allowed(tmp_path):
    # 95 megapixels: Pillow warns (over 89M) but the project's limit (100M) admits it.
    assert image_size(_png_header(tmp_path / "wide.png", 10000, 9500), max_pixels=100_000_000, verify=False) == (10000, 9500)


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (40, 20), (255, 0, 0))
    im.paste((0, 0, 255), (20, 0, 40, 20))  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned: shown rotated 90 degrees clockwise
    p = tmp_path / "turned.jpg"
    im.save(p, exif=exif, quality=95)
    assert image_size(p) == (20, 40)
    out = open_rgb(p)
    assert out.size == (20, 40)
    top, bottom = out.getpixel((10, 3)), out.getpixel((10, 36))  # the left half is now on top
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60


def _rgb_of(tmp_path, im, name, **save):
    p = tmp_path / name
    im.save(p, **save)
    out = open_rgb(p)
    assert out.mode == "RGB" and out.size == im.size
    return [out.getpixel((x, 0)) for x in range(im.width)]


def test_every_mode_comes_back_rgb(tmp_path):
    cmyk = _rgb_of(tmp_path, Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "cmyk.jpg", quality=100)[0]
    assert cmyk[0] > 240 and cmyk[1] < 15 and cmyk[2] < 15  # pure red

    pal = Image.new("P", (2, 1))
    pal.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    pal.putdata([0, 1])
    assert _rgb_of(tmp_path, pal, "pal.png") == [(10, 20, 30), (200, 100, 50)]
    assert _rgb_of(tmp_path, pal, "pal_transparent.png", transparency=0) == [(255, 255, 255), (200, 100, 50)]

    assert _rgb_of(tmp_path, Image.new("L", (1, 1), 77), "l.png") == [(77, 77, 77)]

    la = Image.new("LA", (2, 1))
    la.putdata([(100, 0), (100, 255)])
    assert _rgb_of(tmp_path, la, "la.png") == [(255, 255, 255), (100, 100, 100)]  # transparent over white

    rgba = Image.new("RGBA", (3, 1))
    rgba.putdata([(10, 20, 30, 255), (10, 20, 30, 0), (0, 0, 0, 128)])
    got = _rgb_of(tmp_path, rgba, "rgba.png")
    assert got[:2] == [(10, 20, 30), (255, 255, 255)] and all(abs(v - 127) <= 1 for v in got[2])

    i16 = Image.fromarray(np.array([[65535, 32768, 0]], dtype=np.uint16))
    assert i16.mode == "I;16"
    white, mid, black = _rgb_of(tmp_path, i16, "i16.png")
    assert white == (255, 255, 255) and black == (0, 0, 0) and all(abs(v - 128) <= 1 for v in mid)
