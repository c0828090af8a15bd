"""The accuracy-vs-latency plot of one target's table."""

from __future__ import annotations

from pathlib import Path

from edgekd.io import atomic_path
from edgekd.reporting.schema import Row
from edgekd.reporting.tables import latency_rows


def plot(target: str, rows: list[Row], front: list[str], path: Path) -> Path | None:
    """Accuracy against p50 latency of one target's rows; the Pareto front (`front`) joined by a
    line, estimates hollow."""
    rows = latency_rows(rows)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for row in rows:
        on_front = row.name in front
        colour = "tab:red" if on_front else "tab:blue"
        estimated = row.measured is False
        label = row.name + (" (estimated)" if estimated else "")
        face = "none" if estimated else colour
        ax.scatter(row.p50_ms, row.accuracy * 100, s=50, facecolors=face, edgecolors=colour, zorder=3)
        ax.annotate(label, (row.p50_ms, row.accuracy * 100), fontsize=8, xytext=(4, 4), textcoords="offset points")
    by_name = {r.name: r for r in rows}
    ax.step(
        [by_name[n].p50_ms for n in front],
        [by_name[n].accuracy * 100 for n in front],
        where="post",
        color="tab:red",
        alpha=0.6,
        label="Pareto front",
    )
    if any(r.measured is False for r in rows):
        ax.scatter([], [], facecolors="none", edgecolors="grey", label="estimated (cost model)")
    ax.set_xlabel("p50 latency, ms (batch 1)")
    ax.set_ylabel("validation accuracy, %")
    estimated_only = all(r.measured is False for r in rows)
    ax.set_title(f"{target}: accuracy vs {'ESTIMATED ' if estimated_only else ''}latency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return path
