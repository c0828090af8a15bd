"""The report stage: report.json (schema: `edgekd.reporting.schema`, docs/report-schema.md), report.md, report.html
and a latency/accuracy plot per target, all rendered from one `Report`; rendering lives in `edgekd.reporting`."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from pydantic import ValidationError

from edgekd.errors import EdgekdError
from edgekd.io import save_json, save_text
from edgekd.reporting import html
from edgekd.reporting.plot import plot
from edgekd.reporting.schema import SCHEMA, BoardEstimates, Report, Row, Table
from edgekd.reporting.snippet import snippets
from edgekd.reporting.tables import pareto, recommend, recommend_from_estimates
from edgekd.reporting.text import markdown


def make_table(facts: dict, rows: list[Row], estimates: list[BoardEstimates], out_dir: Path) -> Table:
    """One target's table: `facts` (target, measured_on, description, arch, threads, int8) and its
    rows, with the recommendation, the Pareto front and the plot (written to `out_dir`)."""
    recommended, notes = recommend(rows)
    by_board = {}
    if recommended is None and estimates:
        by_board = {"recommended_by_board": recommend_from_estimates(rows, estimates)}
        choices = list(by_board["recommended_by_board"].values())
        recommended = max(choices, key=choices.count) if choices else None
    front = pareto(rows)
    image = plot(facts["target"], rows, front, out_dir / f"latency_accuracy_{facts['target']}.png")
    measured = any(r.measured for r in rows)  # estimates are not measurements
    return Table(
        **facts,
        measured=measured,
        rows=rows,
        estimates=estimates,
        recommended=recommended,
        notes=notes,
        **by_board,
        pareto=front,
        plot=str(image) if image else None,
    )


def make_report(facts: dict, out_dir: Path) -> Report:
    """`facts`: what the stages produced (target, versions, config, data, models, artifacts, tables), typed;
    the ship-it snippet is written for the recommended artifact."""
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    snippet = snippets(facts["target"], facts["tables"], facts["artifacts"], out_dir)
    return Report(schema=SCHEMA, created=created, **facts, snippet=snippet)


def write_report(report: Report, out_dir: Path) -> Report:
    """Writes report.json, report.md and report.html, each from `report`."""
    save_json(report.to_json(), out_dir / "report.json")
    save_text(markdown(report), out_dir / "report.md")
    save_text(html.render(report), out_dir / "report.html")
    return report


def load_report(path: Path) -> Report:
    path = Path(path)
    file = path / "report.json" if path.is_dir() else path
    try:
        raw = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise EdgekdError(f"{file} is not an edgekd report ({e}); pass a build's --out directory") from None
    if not isinstance(raw, dict) or not str(raw.get("schema", "")).startswith("edgekd.report/"):
        raise EdgekdError(f"{file} is not an edgekd report (no edgekd.report schema)")
    try:
        return Report.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise EdgekdError(f"{file} does not match {SCHEMA}: {where}: {first['msg']}") from None
