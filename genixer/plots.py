"""Small PNG plots for asset metadata (matplotlib, no display)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def curves_png(curves: dict[str, list[tuple[float, float]]], title: str, ylabel: str = "loss", xlabel: str = "step",
               marks: dict[str, float] | None = None) -> bytes:
    """Line plots; `marks`: labelled vertical lines (a threshold where it cuts the distribution)."""
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=90)
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
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def smooth(values: list[float], k: int = 10) -> list[tuple[int, float]]:
    out, acc = [], 0.0
    for i, v in enumerate(values, 1):
        acc += v
        if i % k == 0:
            out.append((i, acc / k))
            acc = 0.0
    return out


def bars_png(groups: dict[str, list[tuple[str, float, float]]], title: str, ylabel: str) -> bytes:
    """Grouped bars with error bars: {series: [(category, value, error), ...]} (same categories)."""
    import numpy as np

    cats = list(dict.fromkeys(c for rows in groups.values() for c, _, _ in rows))
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(cats) * max(len(groups), 1)), 3.4), dpi=90)
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
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
