"""The report as text: report.md and the console's tables."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from edgekd.formats import app_snippets
from edgekd.reporting.schema import Report, Row
from edgekd.reporting.schema import Table as TargetTable
from edgekd.reporting.tables import TOLERANCE

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


def cell(row: Row, key: str, fmt: str) -> str:
    value = getattr(row, key)
    if key == "measured" and value is not None:
        return "measured" if value else "estimated"
    if row.estimate and key in ("p50_ms", "fps"):  # an estimate never shows as a bare number
        return row.estimate if key == "p50_ms" else f"~{value:.0f} (estimated)"
    return "—" if value is None else fmt.format(value)


def summary(report: Report) -> list[str]:
    """The report's header: data, models, machine and versions, one fact per line."""
    env = report.environment
    flags = ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in env.int8_flags.items())
    versions = ", ".join(f"{k} {v}" for k, v in env.packages.items() if v)
    data, student = report.data, report.student
    int8 = student.val_accuracy_int8
    n_val = data.val_samples
    # below 1/TOLERANCE images one image moves accuracy by more than the recommendation's tie
    # band, so the ranking is noise: say so rather than let a table of figures imply otherwise
    few = (
        [f"Warning: accuracy measured on {n_val} val images, so one image moves it by {100 / n_val:.1f} points; "
         f"rankings within that are noise: give val/ {round(1 / TOLERANCE)} images or more"]
        if 0 < n_val < round(1 / TOLERANCE)
        else []
    )  # fmt: skip
    return [
        f"Created: {report.created}",
        f"Data: {data.path} ({data.train_samples} train / {data.val_samples} val images, "
        f"{len(data.classes)} classes, {data.input_size}x{data.input_size})",
        *few,
        f"Teacher: {report.teacher.source}, val accuracy {report.teacher.val_accuracy:.2%}",
        f"Student: {student.arch}, fp32 {student.val_accuracy_fp32:.2%}"
        + (f", int8 QAT {int8:.2%}" if int8 is not None else ""),
        *_weak_teacher(report),
        *_qat_lines(report),
        f"Machine: {env.cpu} ({env.machine}, {env.cores} cores); {flags}",
        f"Versions: Python {env.python}, {versions}",
    ]


def _weak_teacher(report: Report) -> list[str]:
    """A teacher its own student outscores teaches little: far below what it should be."""
    teacher, student = report.teacher.val_accuracy, report.student.val_accuracy_fp32
    if teacher >= student:
        return []
    return [
        f"Warning: the teacher's val accuracy ({teacher:.2%}) is below its distilled student's ({student:.2%}), "
        "far below what a teacher should be: check its class order, mean/std, input size and channel order, "
        "or distill from a better teacher"
    ]


def _qat_lines(report: Report) -> list[str]:
    """Which QAT each int8 artifact comes from, when more than one QAT ran."""
    by_quantizer = report.student.val_accuracy_int8_by_quantizer
    if len(by_quantizer) < 2:
        return []
    parts = []
    for quantizer, accuracy in by_quantizer.items():
        names = [a.name for a in report.artifacts if a.quantizer == quantizer]
        parts.append(f"{quantizer} QAT ({accuracy:.2%}) for {', '.join(names) or 'no artifact'}")
    return ["Int8 from (edgekd.quantizers): " + "; ".join(parts)]


def facts_notes(table: TargetTable) -> list[str]:
    """Why rows did not run, and where estimates come from."""
    rows = table.rows
    notes = [f"Not run: {reason}" for reason in sorted({r.reason for r in rows if r.reason})]
    notes += [f"{r.artifact}: accuracy and agreement from {r.checked_by}" for r in rows if r.checked_by]
    notes += [f"Host only: {r.verify_note}" for r in rows if r.verify_note]
    return notes + _estimate_sources(rows)


def heading(table: TargetTable) -> str:
    rows = table.rows
    if any(r.measured for r in rows):
        state = "measured" + (f" on {table.measured_on}" if table.measured_on else "")
    elif any(r.measured is False for r in rows):
        state = "ESTIMATED by a cost model, not measured"
    else:
        state = "not run"
    return f"{table.target}: {table.description} ({state}, {table.threads} threads, batch 1)"


def estimate_grid(table: TargetTable) -> tuple[list[str], list[list[str]]]:
    """The boards' estimates beside each other: a header and one row of cells per artifact."""
    boards = table.estimates
    header = ["Artifact", *(f"{b.board} p50" for b in boards)]
    grid = []
    for i, row in enumerate(table.rows):
        cells = [b.rows[i].estimate or "not estimated" for b in boards]
        grid.append([row.artifact, *cells])
    return header, grid


def estimate_notes(table: TargetTable) -> list[str]:
    rows = [r for b in table.estimates for r in b.rows]
    notes = [f"Not estimated: {reason}" for reason in sorted({r.reason for r in rows if r.reason})]
    return notes + int8_ratios(table) + load_work(table) + _estimate_sources(rows)


def load_work(table: TargetTable) -> list[str]:
    """What emulation measures truthfully of loading: the instructions, per emulated core (no time)."""
    seen: dict[str, list[str]] = {}
    for board in table.estimates:
        for guess in board.rows:
            if guess.load_instructions_m is not None:
                core = seen.setdefault(guess.profiled_on, [])
                fact = f"{guess.artifact} {guess.load_instructions_m:,.0f} M"
                if fact not in core:
                    core.append(fact)
    return [f"Loading the model, A64 instructions counted on an emulated {core} (emulated, no time claimed): "
            f"{', '.join(facts)}" for core, facts in seen.items()]  # fmt: skip


def int8_ratios(table: TargetTable) -> list[str]:
    """Per board, each runtime's estimated int8 p50 over its fp32 p50 (below 1: int8 is faster)."""
    lines = []
    for board in table.estimates:
        p50 = {(row.runtime, row.precision): guess.p50_ms for row, guess in zip(table.rows, board.rows)}
        ratios = [
            f"{runtime} {p50[(runtime, 'int8')] / fp32:.2f}"
            for (runtime, precision), fp32 in p50.items()
            if precision == "fp32" and fp32 and p50.get((runtime, "int8"))
        ]
        if ratios:
            lines.append(f"{board.board}: int8 / fp32 p50 (ESTIMATED): {', '.join(ratios)}")
    return lines


def _estimate_sources(rows: list[Row]) -> list[str]:
    """Where estimated rows come from, each fact once."""
    notes = []
    for key, prefix in (("estimated_by", "ESTIMATED, not measured: "), ("scaled_by", ""), ("extrapolated", "")):
        for fact in dict.fromkeys(getattr(r, key) for r in rows if getattr(r, key)):
            notes.append(f"{prefix}{fact}")
    return notes + (["How: docs/cost-model.md"] if notes else [])


def recommendation(table: TargetTable) -> str | None:
    if not table.recommended:
        return None
    by_board = table.recommended_by_board
    if by_board:
        boards = [b for b, choice in by_board.items() if choice == table.recommended]
        others = "; ".join(f"{c} on {b}" for b, c in by_board.items() if c != table.recommended)
        return (
            f"{table.recommended} (fastest by ESTIMATED p50 on {', '.join(boards)} within 1 point of the best "
            f"accuracy on this target; artifacts without an estimate not ranked)" + (f"; {others}" if others else "")
        )
    row = next(r for r in table.rows if r.name == table.recommended)
    basis = "estimated" if row.measured is False else "measured"
    return f"{table.recommended} (fastest by {basis} p50 within 1 point of the best accuracy)"


def markdown(report: Report) -> str:
    lines = [f"# edgekd report: {report.student.arch} for target `{report.target}`", ""]
    lines += [f"- {line}" for line in summary(report)] + [""]
    for table in report.tables:
        lines += [f"## {heading(table)}", ""]
        lines.append("| " + " | ".join(title for title, _, _ in COLUMNS) + " |")
        lines.append("|" + "---|" * len(COLUMNS))
        for row in table.rows:
            lines.append("| " + " | ".join(cell(row, key, fmt) for _, key, fmt in COLUMNS) + " |")
        lines.append("")
        lines += [f"- {note}" for note in facts_notes(table)]
        if table.estimates:
            header, grid = estimate_grid(table)
            lines += ["", "Latency on ARM boards, ESTIMATED (no board measured; band: docs/cost-model.md):", ""]
            lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(cells) + " |" for cells in grid] + [""]
            lines += [f"- {note}" for note in estimate_notes(table)]
        if table.recommended:
            lines.append(f"- **Recommended: {recommendation(table)}**")
        if table.pareto:
            lines.append(f"- Pareto front (fastest first): {', '.join(table.pareto)}")
        lines += [f"- Note: {note}" for note in table.notes]
        if table.plot:
            lines.append(f"\n![accuracy vs latency]({Path(table.plot).name})")
        lines.append("")
    snippet = report.snippet
    if snippet:
        lines += [f"## Ship it: `{snippet.artifact}` (recommended for {snippet.target})", ""]
        for code in app_snippets():
            if getattr(snippet, code.key):
                lines += [f"{code.title}:", "", f"```{code.language}", getattr(snippet, code.key).rstrip(), "```", ""]
    return "\n".join(lines)


def print_tables(report: Report, console: Console) -> None:
    for table in report.tables:
        rich_table = Table(title=f"{table.target} ({'measured' if table.measured else 'not run'})")
        columns = [c for c in COLUMNS if c[0] in CONSOLE_COLUMNS]
        for title, _, _ in columns:
            rich_table.add_column(title)
        for row in table.rows:
            rich_table.add_row(*(cell(row, key, fmt) for _, key, fmt in columns))
        console.print(rich_table)
        if table.recommended:
            console.print(f"recommended: [bold]{table.recommended}[/bold]")
