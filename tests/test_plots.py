"""Figures fit a page and show as thumbnails (issue 28, item 12): every figure is at most MAX_WIDTH_PX wide with its
title, legend and tick labels inside the saved image; a figure in asset metadata comes with a thumbnail short enough
for the Dagster UI to render in the metadata table (not only behind [Show Markdown])."""

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from genixer.plots import MAX_WIDTH_PX, bars_figure, bars_png, curves_figure, curves_png
from genixer_assets.common import UI_INLINE_MD_CHARS, md_figure

# The demo's deltas figure: 13 benchmarks x 4 recipes (2,808 px wide before), and a wider one still.
BENCHMARKS = ["vqav2", "vqav2_heldout", "gqa", "vizwiz", "sqa", "textvqa", "pope_adversarial", "pope_popular", "pope_random",
              "mme", "mmbench", "refcoco_testA", "refcoco_testB"]
RECIPES = ["genixer_vqa", "raw_vqa", "genixer_rec", "baseline_aa"]


def _groups(n_benchmarks: int) -> dict:
    rng = np.random.default_rng(0)
    names = [f"{BENCHMARKS[i % len(BENCHMARKS)]}_{i}" for i in range(n_benchmarks)]
    return {r: [(b, float(rng.normal(0, 5)), 3.0) for b in names] for r in RECIPES}


def _size(png: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(png)) as im:
        assert im.format == "PNG"
        return im.size


def _inside(fig, artist) -> bool:
    renderer = fig.canvas.get_renderer()
    box, page = artist.get_window_extent(renderer), fig.bbox
    return page.x0 - 1 <= box.x0 and box.x1 <= page.x1 + 1 and page.y0 - 1 <= box.y0 and box.y1 <= page.y1 + 1


@pytest.mark.parametrize("n_benchmarks", [13, 40])
def test_the_deltas_figure_fits_a_page_with_its_title_and_legend_inside(n_benchmarks):
    groups = _groups(n_benchmarks)
    width, height = _size(bars_png(groups, "delta vs baseline (points; bars: half the 95% interval)", "points"))
    assert width <= MAX_WIDTH_PX <= 1600 and 200 < height < width
    fig = bars_figure(groups, "delta vs baseline (points; bars: half the 95% interval)", "points")
    fig.canvas.draw()
    (ax,) = fig.axes
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == RECIPES
    assert _inside(fig, legend) and _inside(fig, ax.title) and ax.title.get_text().startswith("delta vs baseline")
    assert _inside(fig, ax.xaxis.label) or not ax.get_xlabel()
    assert all(_inside(fig, t) for t in ax.get_xticklabels())  # the rotated benchmark names too
    tight = fig.get_tightbbox(fig.canvas.get_renderer()).transformed(fig.dpi_scale_trans)  # everything drawn, in pixels
    assert tight.x0 >= -1 and tight.y0 >= -1 and tight.x1 <= fig.bbox.x1 + 1 and tight.y1 <= fig.bbox.y1 + 1


def test_curves_fit_with_their_legend_and_title():
    curves = {f"task_{k}": [(s, np.exp(-s / (50 + k))) for s in range(0, 400, 10)] for k in range(9)}
    width, _ = _size(curves_png(curves, "loss per task", marks={"lambda": 0.7}))
    assert width <= MAX_WIDTH_PX
    fig = curves_figure(curves, "loss per task", marks={"lambda": 0.7})
    fig.canvas.draw()
    (ax,) = fig.axes
    assert _inside(fig, ax.get_legend()) and _inside(fig, ax.title) and _inside(fig, ax.xaxis.label) and _inside(fig, ax.yaxis.label)


def _data_image(md: str) -> tuple[str, bytes]:
    m = re.fullmatch(r"!\[[^\]]*\]\(data:(image/[a-z]+);base64,([A-Za-z0-9+/=]+)\)", md)
    assert m, md[:120]
    return m.group(1), base64.b64decode(m.group(2))


@pytest.mark.parametrize("kind", ["deltas", "curves"])
def test_a_figure_in_metadata_comes_with_a_thumbnail_the_ui_renders_inline(kind):
    png = bars_png(_groups(13), "delta vs baseline", "points") if kind == "deltas" else \
        curves_png({"all": [(s, 1 / (1 + s)) for s in range(100)]}, "loss")
    meta = md_figure("learning_curves", png, "a figure with a longish alternative text")
    assert list(meta) == ["learning_curves (thumbnail)", "learning_curves"]  # the thumbnail first, as the table lists them
    thumb, full = meta["learning_curves (thumbnail)"].value, meta["learning_curves"].value
    assert len(thumb) < UI_INLINE_MD_CHARS < len(full)  # inline in the table / behind [Show Markdown]
    mime, data = _data_image(thumb)
    with Image.open(io.BytesIO(data)) as im:
        assert im.format.lower() == mime.split("/")[1] and 64 <= im.width <= 320
        ratio = im.width / im.height
    assert _data_image(full) == ("image/png", png)
    w, h = _size(png)
    assert ratio == pytest.approx(w / h, rel=0.1)  # the same picture, smaller


def test_a_tall_preview_sheet_shows_its_first_tiles():
    """preview_png's column of tiles is taller than wide: its thumbnail is the top square (the first tiles), not a
    sliver of the whole column."""
    sheet = Image.new("RGB", (300, 1200), (20, 20, 200))
    sheet.paste((200, 20, 20), (0, 0, 300, 150))  # the first tile red, the rest blue
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    meta = md_figure("kept_preview", buf.getvalue(), "kept rows with their judge_p_yes")
    assert len(meta["kept_preview (thumbnail)"].value) < UI_INLINE_MD_CHARS
    _, data = _data_image(meta["kept_preview (thumbnail)"].value)
    with Image.open(io.BytesIO(data)) as im:
        assert im.width == im.height >= 64
        top, bottom = im.convert("RGB").getpixel((im.width // 2, 2)), im.convert("RGB").getpixel((im.width // 2, im.height - 3))
    assert top[0] > 150 > top[2] and bottom[2] > 150 > bottom[0]  # the top square: tile 1 (red) above, tile 2 (blue) below
