"""Small PNG plots for asset metadata (matplotlib, no display)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def curves_png(curves: dict[str, list[tuple[float, float]]], title: str, ylabel: str = "loss", xlabel: str = "step") -> bytes:
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=90)
    for name, pts in sorted(curves.items()):
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, label=name, linewidth=1.2)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if len(curves) > 1:
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
