"""report.json (schema in docs/report-schema.md), report.md and a latency/accuracy plot per target."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edgekd.io import atomic_path, save_json, save_text

SCHEMA = "edgekd.report/1"
# (column title, row key, format)
COLUMNS = [
    ("Artifact", "artifact", "{}"),
    ("Precision", "precision", "{}"),
    ("Runtime", "runtime", "{}"),
    ("Status", "status", "{}"),
    ("Size MB", "size_mb", "{:.2f}"),
    ("Accuracy", "accuracy", "{:.2%}"),
    ("Agreement", "agreement", "{:.2%}"),
    ("p50 ms", "p50_ms", "{:.3f}"),
    ("p90 ms", "p90_ms", "{:.3f}"),
    ("p99 ms", "p99_ms", "{:.3f}"),
    ("FPS", "fps", "{:.0f}"),
    ("Peak RSS MB", "peak_rss_mb", "{:.0f}"),
    ("Ran as", "executed", "{}"),
]


# the console shows the short table; report.md has every column
CONSOLE_COLUMNS = ["Artifact", "Precision", "Runtime", "Status", "Size MB", "Accuracy", "p50 ms", "FPS"]


def table_rows(artifacts: list[dict], bench_rows: list[dict], on_host: bool) -> list[dict]:
    """Joins each artifact's export and verification facts with its benchmark on one target.

    On this host the accuracy is the one its runtime produced here; on another target it is
    the one verification expects there (see `stages.verify`).
    """
    by_name = {a["name"]: a for a in artifacts}
    prefix = "host_" if on_host else ""
    rows = []
    for bench in bench_rows:
        art = by_name[bench["artifact"]]
        check = art.get("verification", {})
        executed = bench.get("executed", {})
        rows.append(
            {
                "artifact": art["name"],
                "precision": art["precision"],
                "runtime": art["runtime"],
                "path": art["path"],
                "size_mb": art["size_mb"],
                "accuracy": check.get(f"{prefix}accuracy"),
                "agreement": check.get(f"{prefix}agreement"),
                **{k: v for k, v in bench.items() if k not in ("artifact", "executed")},
                "executed": (
                    f"{executed['precision']} ({executed['int8_convs']}/{executed['convs']} int8 convs)"
                    if executed.get("convs")
                    else None
                ),
            }
        )
    return rows


def recommend(rows: list[dict], tolerance: float = 0.01) -> tuple[str | None, list[str]]:
    """The fastest artifact within `tolerance` of the best accuracy, and notes on int8 that
    did not pay off: edgekd never recommends a slower 'optimized' artifact."""
    ok = [r for r in rows if r["status"] == "ok" and r.get("accuracy") is not None]
    if not ok:
        return None, []
    best = max(r["accuracy"] for r in ok)
    choice = min((r for r in ok if r["accuracy"] >= best - tolerance), key=lambda r: r["p50_ms"])
    notes = []
    for runtime in sorted({r["runtime"] for r in ok}):
        pair = {r["precision"]: r for r in ok if r["runtime"] == runtime}
        if "fp32" in pair and "int8" in pair and pair["int8"]["p50_ms"] >= pair["fp32"]["p50_ms"]:
            notes.append(
                f"int8 is not faster than fp32 in {runtime} here "
                f"({pair['int8']['p50_ms']:.3f} vs {pair['fp32']['p50_ms']:.3f} ms p50): ship fp32 for this runtime"
            )
    return choice["artifact"], notes


def _cell(row: dict, key: str, fmt: str) -> str:
    value = row.get(key)
    return "—" if value is None else fmt.format(value)


def markdown(report: dict) -> str:
    lines = [f"# edgekd report: {report['student']['arch']} for target `{report['target']}`", ""]
    env = report["environment"]
    flags = ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in env["int8_flags"].items())
    versions = ", ".join(f"{k} {v}" for k, v in env["packages"].items() if v)
    lines += [
        f"- Created: {report['created']}",
        f"- Data: {report['data']['path']} ({report['data']['train_samples']} train / "
        f"{report['data']['val_samples']} val images, {len(report['data']['classes'])} classes, "
        f"{report['data']['input_size']}x{report['data']['input_size']})",
        f"- Teacher: {report['teacher']['source']}, val accuracy {report['teacher']['val_accuracy']:.2%}",
        f"- Student: {report['student']['arch']}, fp32 {report['student']['val_accuracy_fp32']:.2%}"
        + (
            f", int8 QAT {report['student']['val_accuracy_int8']:.2%}"
            if report["student"].get("val_accuracy_int8") is not None
            else ""
        ),
        f"- Machine: {env['cpu']} ({env['machine']}, {env['cores']} cores); {flags}",
        f"- Versions: Python {env['python']}, {versions}",
        "",
    ]
    for table in report["tables"]:
        state = "measured" if table["measured"] else "not run"
        lines += [f"## {table['target']}: {table['description']} ({state}, {table['threads']} threads, batch 1)", ""]
        lines.append("| " + " | ".join(title for title, _, _ in COLUMNS) + " |")
        lines.append("|" + "---|" * len(COLUMNS))
        for row in table["rows"]:
            lines.append("| " + " | ".join(_cell(row, key, fmt) for _, key, fmt in COLUMNS) + " |")
        lines.append("")
        reasons = sorted({r["reason"] for r in table["rows"] if r.get("reason")})
        lines += [f"- Not run: {reason}" for reason in reasons]
        if table["recommended"]:
            lines.append(f"- **Recommended: `{table['recommended']}`** (fastest within 1 point of the best accuracy)")
        lines += [f"- Note: {note}" for note in table["notes"]]
        if table.get("plot"):
            lines.append(f"\n![accuracy vs latency]({Path(table['plot']).name})")
        lines.append("")
    return "\n".join(lines)


def plot(table: dict, path: Path) -> Path | None:
    rows = [r for r in table["rows"] if r["status"] == "ok" and r.get("accuracy") is not None]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for row in rows:
        ax.scatter(row["p50_ms"], row["accuracy"] * 100, s=40)
        ax.annotate(
            row["artifact"],
            (row["p50_ms"], row["accuracy"] * 100),
            fontsize=8,
            xytext=(4, 4),
            textcoords="offset points",
        )
    ax.set_xlabel("p50 latency, ms (batch 1)")
    ax.set_ylabel("validation accuracy, %")
    ax.set_title(f"{table['target']}: accuracy vs latency")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return path


def print_tables(report: dict, console: Console) -> None:
    for table in report["tables"]:
        rich_table = Table(title=f"{table['target']} ({'measured' if table['measured'] else 'not run'})")
        columns = [c for c in COLUMNS if c[0] in CONSOLE_COLUMNS]
        for title, _, _ in columns:
            rich_table.add_column(title)
        for row in table["rows"]:
            rich_table.add_row(*(_cell(row, key, fmt) for _, key, fmt in columns))
        console.print(rich_table)
        if table["recommended"]:
            console.print(f"recommended: [bold]{table['recommended']}[/bold]")


def write_report(facts: dict, out_dir: Path) -> dict:
    """`facts`: what the stages produced. Writes report.json, report.md and plots; returns the report."""
    report = {"schema": SCHEMA, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **facts}
    for table in report["tables"]:
        table["recommended"], table["notes"] = recommend(table["rows"])
        image = plot(table, out_dir / f"latency_accuracy_{table['target']}.png")
        table["plot"] = str(image) if image else None
    save_json(report, out_dir / "report.json")
    save_text(markdown(report), out_dir / "report.md")
    return report


def load_report(path: Path) -> dict:
    path = Path(path)
    return json.loads((path / "report.json" if path.is_dir() else path).read_text())
