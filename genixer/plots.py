"""Small PNG plots for asset metadata (matplotlib, no display).

Every figure fits a page: at most MAX_WIDTH_PX wide (the Dagster UI's markdown dialog is 80% of the window, about
1,280 px on a 1,600 px screen), drawn with matplotlib's constrained layout so that the title, the axis labels, the
tick labels and the legend (placed outside the axes) are inside the saved image."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

DPI = 90
MAX_WIDTH_PX = 1200


def _figure(width_in: float, height_in: float) -> tuple[Figure, plt.Axes]:
    return plt.subplots(figsize=(min(width_in, MAX_WIDTH_PX / DPI), height_in), dpi=DPI, layout="constrained")


def to_png(fig: Figure) -> bytes:
    """The figure as PNG at its own size (no tight crop: the layout already keeps everything inside), then closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return buf.getvalue()


def curves_figure(curves: dict[str, list[tuple[float, float]]], title: str, ylabel: str = "loss", xlabel: str = "step",
                  marks: dict[str, float] | None = None) -> Figure:
    """Line plots; `marks`: labelled vertical lines (a threshold where it cuts the distribution)."""
    fig, ax = _figure(6, 3.2)
    for name, pts in sorted(curves.items()):
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, label=name, linewidth=1.2)
    for k, (name, x) in enumerate(sorted((marks or {}).items())):
        ax.axvline(x, color=f"C{k + len(curves)}", linestyle="--", linewidth=1, label=f"{name} = {x:.2f}")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if len(curves) + len(marks or {}) > 1:
        ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    return fig


def curves_png(curves: dict[str, list[tuple[float, float]]], title: str, ylabel: str = "loss", xlabel: str = "step",
               marks: dict[str, float] | None = None) -> bytes:
    return to_png(curves_figure(curves, title, ylabel, xlabel, marks))


def smooth(values: list[float], k: int = 10) -> list[tuple[int, float]]:
    out, acc = [], 0.0
    for i, v in enumerate(values, 1):
        acc += v
        if i % k == 0:
            out.append((i, acc / k))
            acc = 0.0
    return out


def bars_figure(groups: dict[str, list[tuple[str, float, float]]], title: str, ylabel: str) -> Figure:
    """Grouped bars with error bars: {series: [(category, value, error), ...]} (same categories). Wider with more bars,
    up to MAX_WIDTH_PX; the legend sits above the axes, outside them, in one row."""
    import numpy as np

    cats = list(dict.fromkeys(c for rows in groups.values() for c, _, _ in rows))
    fig, ax = _figure(max(6.0, 0.25 * len(cats) * max(len(groups), 1)), 4.0)
    width = 0.8 / max(len(groups), 1)
    for i, (name, rows) in enumerate(groups.items()):
        vals = {c: (v, e) for c, v, e in rows}
        xs = np.arange(len(cats)) + i * width
        ys = [vals[c][0] if c in vals else np.nan for c in cats]
        es = [vals[c][1] if c in vals and np.isfinite(vals[c][1]) else 0.0 for c in cats]
        ax.bar(xs, ys, width, yerr=es, label=name, capsize=2)
    ax.set_xticks(np.arange(len(cats)) + width * (len(groups) - 1) / 2, cats, rotation=35, ha="right", fontsize=7)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set(title=title, ylabel=ylabel)
    if groups:
        fig.legend(loc="outside upper center", ncol=len(groups), fontsize=8, frameon=False)
    ax.grid(alpha=0.3, axis="y")
    return fig


def bars_png(groups: dict[str, list[tuple[str, float, float]]], title: str, ylabel: str) -> bytes:
    return to_png(bars_figure(groups, title, ylabel))
