"""report.json (schema in docs/report-schema.md), report.md and a latency/accuracy plot per target."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edgekd.errors import EdgekdError
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
    ("Numerics from", "numerics", "{}"),
    ("p50 ms", "p50_ms", "{:.3f}"),
    ("p90 ms", "p90_ms", "{:.3f}"),
    ("p99 ms", "p99_ms", "{:.3f}"),
    ("Batch", "batch", "{}"),
    ("FPS", "fps", "{:.0f}"),
    ("Peak RSS MB", "peak_rss_mb", "{:.0f}"),
    ("Measured", "measured", "{}"),
    ("Ran as", "executed", "{}"),
]


# the console shows the short table; report.md has every column
CONSOLE_COLUMNS = [
    "Artifact", "Precision", "Runtime", "Status", "Size MB", "Accuracy", "Agreement", "Numerics from", "p50 ms", "FPS",
    "Measured",
]  # fmt: skip
NUMERICS = {"runtime": "this host", "emulated": "emulated", "reference": "reference"}


def _numerics(check: dict, on_host: bool) -> str | None:
    """How a row's accuracy and agreement were obtained, in a few words."""
    if on_host or not check:
        return "this host" if check else None
    if check.get("method") == "not verified":
        return "not verified"
    label = NUMERICS.get(check.get("method"), check.get("method"))
    return f"{label} ({check['images']} images)" if check.get("images") else label


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
                "numerics": _numerics(check, on_host),
                "checked_by": None if on_host else check.get("checked_by"),
                "verify_note": None if on_host else check.get("note"),
                **{k: v for k, v in bench.items() if k not in ("artifact", "executed")},
                # False for a cost model's estimate; None when nothing ran
                "measured": bench.get("measured", True) if bench["status"] == "ok" else None,
                "executed": (
                    f"{executed['precision']} ({executed['int8_convs']}/{executed['convs']} int8 convs)"
                    if executed.get("convs")
                    else None
                ),
            }
        )
    return rows


def row_name(row: dict) -> str:
    """An artifact, or an artifact run one way (GPU rows: one artifact, several variants)."""
    return f"{row['artifact']} ({row['variant']})" if row.get("variant") else row["artifact"]


def latency_rows(rows: list[dict]) -> list[dict]:
    """Rows that ran at batch 1 with a known accuracy: what latency comparisons are made on
    (a GPU's throughput-batch rows are reported beside them, not ranked against them)."""
    return [r for r in rows if r["status"] == "ok" and r.get("accuracy") is not None and r.get("batch", 1) == 1]


TOLERANCE = 0.01  # accuracy within this of the best counts as equal when recommending


def recommend(rows: list[dict], tolerance: float = TOLERANCE) -> tuple[str | None, list[str]]:
    """The fastest artifact within `tolerance` of the best accuracy, and notes on int8 that
    did not pay off: edgekd never recommends a slower 'optimized' artifact."""
    ok = latency_rows(rows)
    if not ok:
        return None, []
    best = max(r["accuracy"] for r in ok)
    # on a tie fp32 wins: the notes below advise fp32 wherever int8 is not faster
    choice = min(
        (r for r in ok if r["accuracy"] >= best - tolerance), key=lambda r: (r["p50_ms"], r["precision"] == "int8")
    )
    notes = []
    for runtime in sorted({r["runtime"] for r in ok}):
        pair = {r["precision"]: r for r in ok if r["runtime"] == runtime}
        if "fp32" in pair and "int8" in pair and pair["int8"]["p50_ms"] >= pair["fp32"]["p50_ms"]:
            notes.append(_int8_not_faster(runtime, pair["int8"], pair["fp32"], best, tolerance))
    return row_name(choice), notes


def _int8_not_faster(runtime: str, int8: dict, fp32: dict, best: float, tolerance: float) -> str:
    """Advises fp32 only under the recommendation's own rule (within `tolerance` of the best
    accuracy), so a note never contradicts the recommended artifact."""
    times = f"{int8['p50_ms']:.3f} vs {fp32['p50_ms']:.3f} ms p50"
    if fp32["accuracy"] >= best - tolerance:
        return f"int8 is not faster than fp32 in {runtime} here ({times}): ship fp32 for this runtime"
    gap = (best - fp32["accuracy"]) * 100
    return (
        f"int8 is not faster than fp32 in {runtime} here ({times}), but fp32 is {gap:.1f} accuracy points below "
        f"the best, more than the {tolerance * 100:g} the recommendation allows: fp32 is not advised"
    )


def pareto(rows: list[dict]) -> list[str]:
    """Artifacts no other artifact beats on both latency and accuracy, fastest first."""
    ok = sorted(
        latency_rows(rows),
        key=lambda r: (r["p50_ms"], -r["accuracy"]),
    )
    front, best = [], -1.0
    for row in ok:
        if row["accuracy"] > best:
            front.append(row_name(row))
            best = row["accuracy"]
    return front


def cell(row: dict, key: str, fmt: str) -> str:
    value = row.get(key)
    if key == "measured" and value is not None:
        return "measured" if value else "estimated"
    if row.get("estimate") and key in ("p50_ms", "fps"):  # an estimate never shows as a bare number
        return row["estimate"] if key == "p50_ms" else f"~{value:.0f} (estimated)"
    return "—" if value is None else fmt.format(value)


def summary(report: dict) -> list[str]:
    """The report's header: data, models, machine and versions, one fact per line."""
    env = report["environment"]
    flags = ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in env["int8_flags"].items())
    versions = ", ".join(f"{k} {v}" for k, v in env["packages"].items() if v)
    data, student = report["data"], report["student"]
    int8 = student.get("val_accuracy_int8")
    n_val = data["val_samples"]
    # below 1/TOLERANCE images one image moves accuracy by more than the recommendation's tie
    # band, so the ranking is noise: say so rather than let a table of figures imply otherwise
    few = (
        [f"Warning: accuracy measured on {n_val} val images, so one image moves it by {100 / n_val:.1f} points; "
         f"rankings within that are noise: give val/ {round(1 / TOLERANCE)} images or more"]
        if 0 < n_val < round(1 / TOLERANCE)
        else []
    )  # fmt: skip
    return [
        f"Created: {report['created']}",
        f"Data: {data['path']} ({data['train_samples']} train / {data['val_samples']} val images, "
        f"{len(data['classes'])} classes, {data['input_size']}x{data['input_size']})",
        *few,
        f"Teacher: {report['teacher']['source']}, val accuracy {report['teacher']['val_accuracy']:.2%}",
        f"Student: {student['arch']}, fp32 {student['val_accuracy_fp32']:.2%}"
        + (f", int8 QAT {int8:.2%}" if int8 is not None else ""),
        f"Machine: {env['cpu']} ({env['machine']}, {env['cores']} cores); {flags}",
        f"Versions: Python {env['python']}, {versions}",
    ]


def facts_notes(table: dict) -> list[str]:
    """Why rows did not run, and where estimates come from."""
    rows = table["rows"]
    notes = [f"Not run: {reason}" for reason in sorted({r["reason"] for r in rows if r.get("reason")})]
    notes += [f"{r['artifact']}: accuracy and agreement from {r['checked_by']}" for r in rows if r.get("checked_by")]
    notes += [f"Host only: {r['verify_note']}" for r in rows if r.get("verify_note")]
    return notes + _estimate_sources(rows)


def heading(table: dict) -> str:
    rows = table["rows"]
    if any(r.get("measured") for r in rows):
        state = "measured" + (f" on {table['measured_on']}" if table.get("measured_on") else "")
    elif any(r.get("measured") is False for r in rows):
        state = "ESTIMATED by a cost model, not measured"
    else:
        state = "not run"
    return f"{table['target']}: {table['description']} ({state}, {table['threads']} threads, batch 1)"


def estimate_grid(table: dict) -> tuple[list[str], list[list[str]]]:
    """The boards' estimates beside each other: a header and one row of cells per artifact."""
    boards = table.get("estimates") or []
    header = ["Artifact", *(f"{b['board']} p50" for b in boards)]
    grid = []
    for i, row in enumerate(table["rows"]):
        cells = [b["rows"][i].get("estimate") or "not estimated" for b in boards]
        grid.append([row["artifact"], *cells])
    return header, grid


def estimate_notes(table: dict) -> list[str]:
    rows = [r for b in table.get("estimates") or [] for r in b["rows"]]
    notes = [f"Not estimated: {reason}" for reason in sorted({r["reason"] for r in rows if r.get("reason")})]
    return notes + _estimate_sources(rows)


def _estimate_sources(rows: list[dict]) -> list[str]:
    """Where estimated rows come from, each fact once."""
    notes = []
    for key, prefix in (("estimated_by", "ESTIMATED, not measured: "), ("scaled_by", ""), ("extrapolated", "")):
        for fact in dict.fromkeys(r[key] for r in rows if r.get(key)):
            notes.append(f"{prefix}{fact}")
    return notes + (["How: docs/cost-model.md"] if notes else [])


def recommend_from_estimates(table: dict) -> dict[str, str]:
    """Per board, the artifact `recommend` picks from this target's accuracy and the board's
    estimated p50 (no board measured; an artifact without an estimate is not ranked)."""
    chosen = {}
    for board in table.get("estimates") or []:
        rows = [
            row | {"status": "ok", "p50_ms": guess["p50_ms"], "measured": False}
            for row, guess in zip(table["rows"], board["rows"])
            if guess["status"] == "ok"
        ]
        choice, _ = recommend(rows)
        if choice:
            chosen[board["board"]] = choice
    return chosen


def recommendation(table: dict) -> str | None:
    if not table.get("recommended"):
        return None
    by_board = table.get("recommended_by_board")
    if by_board:
        boards = [b for b, choice in by_board.items() if choice == table["recommended"]]
        others = "; ".join(f"{c} on {b}" for b, c in by_board.items() if c != table["recommended"])
        return (
            f"{table['recommended']} (fastest by ESTIMATED p50 on {', '.join(boards)} within 1 point of the best "
            f"accuracy on this target; artifacts without an estimate not ranked)" + (f"; {others}" if others else "")
        )
    row = next(r for r in table["rows"] if row_name(r) == table["recommended"])
    basis = "estimated" if row.get("measured") is False else "measured"
    return f"{table['recommended']} (fastest by {basis} p50 within 1 point of the best accuracy)"


def markdown(report: dict) -> str:
    lines = [f"# edgekd report: {report['student']['arch']} for target `{report['target']}`", ""]
    lines += [f"- {line}" for line in summary(report)] + [""]
    for table in report["tables"]:
        lines += [f"## {heading(table)}", ""]
        lines.append("| " + " | ".join(title for title, _, _ in COLUMNS) + " |")
        lines.append("|" + "---|" * len(COLUMNS))
        for row in table["rows"]:
            lines.append("| " + " | ".join(cell(row, key, fmt) for _, key, fmt in COLUMNS) + " |")
        lines.append("")
        lines += [f"- {note}" for note in facts_notes(table)]
        if table.get("estimates"):
            header, grid = estimate_grid(table)
            lines += ["", "Latency on ARM boards, ESTIMATED (no board measured; band: docs/cost-model.md):", ""]
            lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(cells) + " |" for cells in grid] + [""]
            lines += [f"- {note}" for note in estimate_notes(table)]
        if table["recommended"]:
            lines.append(f"- **Recommended: {recommendation(table)}**")
        if table.get("pareto"):
            lines.append(f"- Pareto front (fastest first): {', '.join(table['pareto'])}")
        lines += [f"- Note: {note}" for note in table["notes"]]
        if table.get("plot"):
            lines.append(f"\n![accuracy vs latency]({Path(table['plot']).name})")
        lines.append("")
    snippet = report.get("snippet")
    if snippet:
        lines += [f"## Ship it: `{snippet['artifact']}` (recommended for {snippet['target']})", ""]
        for runtime in ("onnxruntime", "openvino"):
            if runtime in snippet:
                lines += [f"Python with {runtime}:", "", "```python", snippet[runtime].rstrip(), "```", ""]
    return "\n".join(lines)


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


def print_tables(report: dict, console: Console) -> None:
    for table in report["tables"]:
        rich_table = Table(title=f"{table['target']} ({'measured' if table['measured'] else 'not run'})")
        columns = [c for c in COLUMNS if c[0] in CONSOLE_COLUMNS]
        for title, _, _ in columns:
            rich_table.add_column(title)
        for row in table["rows"]:
            rich_table.add_row(*(cell(row, key, fmt) for _, key, fmt in columns))
        console.print(rich_table)
        if table["recommended"]:
            console.print(f"recommended: [bold]{table['recommended']}[/bold]")


def write_report(facts: dict, out_dir: Path) -> dict:
    """`facts`: what the stages produced. Writes report.json, report.md and plots; returns the report."""
    report = {"schema": SCHEMA, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **facts}
    from edgekd.stages import report_html
    from edgekd.stages.snippet import snippets

    for table in report["tables"]:
        table["recommended"], table["notes"] = recommend(table["rows"])
        if table["recommended"] is None and table.get("estimates"):
            by_board = recommend_from_estimates(table)
            choices = list(by_board.values())
            table["recommended_by_board"] = by_board
            table["recommended"] = max(choices, key=choices.count) if choices else None
        table["pareto"] = pareto(table["rows"])
        image = plot(table, out_dir / f"latency_accuracy_{table['target']}.png")
        table["plot"] = str(image) if image else None
    report["snippet"] = snippets(report, out_dir)
    save_json(report, out_dir / "report.json")
    save_text(markdown(report), out_dir / "report.md")
    save_text(report_html.render(report), out_dir / "report.html")
    return report


def load_report(path: Path) -> dict:
    path = Path(path)
    file = path / "report.json" if path.is_dir() else path
    try:
        report = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise EdgekdError(f"{file} is not an edgekd report ({e}); pass a build's --out directory") from None
    if not str(report.get("schema", "")).startswith("edgekd.report/"):
        raise EdgekdError(f"{file} is not an edgekd report (no edgekd.report schema)")
    return report
