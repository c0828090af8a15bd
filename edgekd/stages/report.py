"""The report stage: report.json (schema: `edgekd.reporting.schema`, docs/report-schema.md), report.md, report.html
and a latency/accuracy plot per target; rendering lives in `edgekd.reporting`."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from edgekd.errors import EdgekdError
from edgekd.io import save_json, save_text
from edgekd.reporting import html
from edgekd.reporting.plot import plot
from edgekd.reporting.schema import SCHEMA, Report
from edgekd.reporting.snippet import snippets
from edgekd.reporting.tables import pareto, recommend, recommend_from_estimates
from edgekd.reporting.text import markdown


def write_report(facts: dict, out_dir: Path) -> dict:
    """`facts`: what the stages produced. Writes report.json, report.md and plots; returns the report."""
    report = {"schema": SCHEMA, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **facts}

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
    Report.model_validate(report)  # a key the schema does not know is a bug here, not the user's
    save_json(report, out_dir / "report.json")
    save_text(markdown(report), out_dir / "report.md")
    save_text(html.render(report), out_dir / "report.html")
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
