"""The accuracy-vs-latency plot of one target's table."""

from __future__ import annotations

from pathlib import Path

from edgekd.io import atomic_path
from edgekd.reporting.tables import latency_rows, row_name


def plot(table: dict, path: Path) -> Path | None:
    """Accuracy against p50 latency; the Pareto front joined by a line, estimates hollow."""
    rows = latency_rows(table["rows"])
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    front = table.get("pareto") or []
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for row in rows:
        on_front = row_name(row) in front
        colour = "tab:red" if on_front else "tab:blue"
        estimated = row.get("measured") is False
        label = row_name(row) + (" (estimated)" if estimated else "")
        face = "none" if estimated else colour
        ax.scatter(row["p50_ms"], row["accuracy"] * 100, s=50, facecolors=face, edgecolors=colour, zorder=3)
        ax.annotate(
            label, (row["p50_ms"], row["accuracy"] * 100), fontsize=8, xytext=(4, 4), textcoords="offset points"
        )
    by_name = {row_name(r): r for r in rows}
    ax.step(
        [by_name[n]["p50_ms"] for n in front],
        [by_name[n]["accuracy"] * 100 for n in front],
        where="post",
        color="tab:red",
        alpha=0.6,
        label="Pareto front",
    )
    if any(r.get("measured") is False for r in rows):
        ax.scatter([], [], facecolors="none", edgecolors="grey", label="estimated (cost model)")
    ax.set_xlabel("p50 latency, ms (batch 1)")
    ax.set_ylabel("validation accuracy, %")
    estimated_only = all(r.get("measured") is False for r in rows)
    ax.set_title(f"{table['target']}: accuracy vs {'ESTIMATED ' if estimated_only else ''}latency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return path
