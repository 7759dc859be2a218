"""Box-aware previews: samples drawn with their boxes and text, as one PNG."""

from __future__ import annotations

import io
import textwrap

from PIL import Image, ImageDraw

from genixer.images import open_rgb


def tile_lines(s: dict, text_width: int = 44) -> list[str]:
    """The text beside a sample's image: its task and scores (judge P(Yes), region-CLIP cosine, where set),
    then each turn wrapped."""
    scores = [f"{name} {float(s[key]):.2f}" for key, name in (("judge_p_yes", "P(Yes)"), ("clip_score", "CLIP"))
              if s.get(key) is not None and s.get(key) == s.get(key)]  # not None, not NaN
    lines = [f"[{s.get('task')}]" + (f" {', '.join(scores)}" if scores else "")]
    for t in s["turns"]:
        lines += textwrap.wrap("Q: " + t["question"], text_width) + textwrap.wrap("A: " + t["answer"], text_width)
    return lines


def preview_png(samples: list[dict], scale: int = 2, text_width: int = 44) -> bytes:
    """A column of tiles: the image (boxes and points drawn) beside its question/answer text and, where the
    sample has them, its judge P(Yes) and region-CLIP score."""
    tiles = []
    for s in samples:
        img = open_rgb(s["image_path"])
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
        draw = ImageDraw.Draw(img)
        for b in list(s.get("boxes") if s.get("boxes") is not None else []):
            draw.rectangle([v * scale for v in b], outline=(0, 0, 0), width=2)
        for p in list(s.get("points") if s.get("points") is not None else []):
            x, y = p[0] * scale, p[1] * scale
            draw.ellipse((x - 4, y - 4, x + 4, y + 4), outline=(0, 0, 0), width=2)
        lines = tile_lines(s, text_width)
        tw = text_width * 6 + 10
        tile = Image.new("RGB", (img.width + tw, max(img.height, 12 * len(lines) + 8)), "white")
        tile.paste(img, (0, 0))
        ImageDraw.Draw(tile).multiline_text((img.width + 6, 4), "\n".join(lines), fill=(0, 0, 0), spacing=2)
        tiles.append(tile)
    w, h = max(t.width for t in tiles), sum(t.height + 4 for t in tiles)
    sheet = Image.new("RGB", (w, h), (230, 230, 230))
    y = 0
    for t in tiles:
        sheet.paste(t, (0, y))
        y += t.height + 4
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()


def thumbnail(png: bytes, max_base64_chars: int) -> tuple[bytes, str]:
    """A small copy of an image whose base64 text fits in `max_base64_chars`, and its MIME type: WebP at the largest of
    a few widths (320 px down to 64, aspect kept) and the best quality that fits; else (or in a Pillow without WebP) a
    4- or 2-colour PNG. A sheet taller than wide (preview_png's column of tiles) keeps its top square, its first
    tiles. ValueError when not even the smallest fits."""
    import base64

    from PIL import features

    im = Image.open(io.BytesIO(png)).convert("RGB")
    if im.height > im.width:
        im = im.crop((0, 0, im.width, im.width))
    widths = (320, 280, 240, 200, 180, 160, 140, 120, 100, 80, 64)
    tries = [("WEBP", w, q) for w in widths for q in (60, 40, 25, 15)] if features.check("webp") else []
    tries += [("PNG", w, c) for w in widths for c in (4, 2)]
    for fmt, width, option in tries:
        small = im.copy()
        small.thumbnail((width, width), Image.LANCZOS)
        buf = io.BytesIO()
        if fmt == "WEBP":
            small.save(buf, format="WEBP", quality=option, method=6)
        else:
            small.quantize(colors=option, dither=Image.Dither.NONE).save(buf, format="PNG", optimize=True)
        if len(base64.b64encode(buf.getvalue())) <= max_base64_chars:
            return buf.getvalue(), f"image/{fmt.lower()}"
    raise ValueError(f"no thumbnail of a {im.width}x{im.height} image fits in {max_base64_chars} base64 characters")
