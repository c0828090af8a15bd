"""report.html: the report in one self-contained file (inline CSS, plots as base64 PNG), so it
opens offline, from an e-mail attachment or a CI artifact, with nothing beside it."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from edgekd.formats import app_snippets
from edgekd.reporting.schema import Report, Table
from edgekd.reporting.text import (
    COLUMNS,
    cell,
    estimate_grid,
    estimate_notes,
    facts_notes,
    heading,
    recommendation,
    summary,
)

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 80em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f0f0f0; }
td:nth-child(-n+4) { text-align: left; }
tr.estimated td { font-style: italic; color: #555; }
tr.recommended td { background: #eef7ee; }
pre { background: #f6f8fa; padding: 1em; overflow-x: auto; }
.note { color: #555; }
"""


def _table(table: Table) -> str:
    head = "".join(f"<th>{escape(title)}</th>" for title, _, _ in COLUMNS)
    body = []
    for row in table.rows:
        classes = []
        if row.measured is False:
            classes.append("estimated")
        if row.name == table.recommended:
            classes.append("recommended")
        cells = "".join(f"<td>{escape(cell(row, key, fmt))}</td>" for _, key, fmt in COLUMNS)
        body.append(f'<tr class="{" ".join(classes)}">{cells}</tr>')
    return f'<table class="results"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _grid(header: list[str], grid: list[list[str]], caption: str) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>" for cells in grid)
    caption = f"<caption>{escape(caption)}</caption>"
    return f'<table class="results estimated">{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _plot(path: str | None, target: str) -> str:
    if not path or not Path(path).is_file():
        return ""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img class="plot" alt="{escape(target)}: accuracy vs latency" src="data:image/png;base64,{data}">'


def render(report: Report) -> str:
    title = f"edgekd report: {report.student.arch} for target {report.target}"
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>",
        f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1>",
        "<ul>" + "".join(f"<li>{escape(line)}</li>" for line in summary(report)) + "</ul>",
    ]
    for table in report.tables:
        parts.append(f"<h2 id='target-{escape(table.target)}'>{escape(heading(table))}</h2>")
        parts.append(_table(table))
        items = facts_notes(table)
        if table.estimates:
            header, grid = estimate_grid(table)
            parts.append(_grid(header, grid, "Latency on ARM boards, ESTIMATED (no board measured)"))
            items += estimate_notes(table)
        if table.recommended:
            items.append(f"Recommended: {recommendation(table)}")
        if table.pareto:
            items.append(f"Pareto front (fastest first): {', '.join(table.pareto)}")
        items += [f"Note: {note}" for note in table.notes]
        parts.append("<ul class='note'>" + "".join(f"<li>{escape(i)}</li>" for i in items) + "</ul>")
        parts.append(_plot(table.plot, table.target))
    snippet = report.snippet
    if snippet:
        parts.append(f"<h2>Ship it: {escape(snippet.artifact)} ({escape(snippet.target)})</h2>")
        for code in app_snippets():
            if text := getattr(snippet, code.key):
                parts.append(f"<h3>{escape(code.title)}</h3><pre><code>{escape(text)}</code></pre>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
