"""`edgekd report RUN_A RUN_B`: two runs side by side, per target and artifact."""

from __future__ import annotations

from edgekd.reporting.schema import Report, Row


def _rows(report: Report) -> dict[tuple[str, str], Row]:
    def key(row: Row) -> str:
        batch = 1 if row.batch is None else row.batch
        return row.name + (f" batch {batch}" if batch != 1 else "")

    return {(t.target, key(r)): r for t in report.tables for r in t.rows}


def _ratio(a: float | None, b: float | None) -> float | None:
    return b / a if a and b is not None else None


def compare(a: Report, b: Report) -> list[dict]:
    """One row per (target, artifact) in either run: p50 and accuracy of A and B, B/A p50 ratio
    (below 1: B is faster) and B-A accuracy. A side that did not run, or ran
    estimated, is marked so: an estimate is never compared as if measured."""
    rows_a, rows_b = _rows(a), _rows(b)
    out = []
    for key in list(rows_a) + [k for k in rows_b if k not in rows_a]:
        ra, rb = rows_a.get(key), rows_b.get(key)
        p50_a = ra.p50_ms if ra and ra.status == "ok" else None
        p50_b = rb.p50_ms if rb and rb.status == "ok" else None
        acc_a, acc_b = (r.accuracy if r else None for r in (ra, rb))
        measured_a, measured_b = (r.measured if r else None for r in (ra, rb))
        out.append(
            {
                "target": key[0],
                "artifact": key[1],
                "measured_a": measured_a,
                "measured_b": measured_b,
                "p50_ms_a": p50_a,
                "p50_ms_b": p50_b,
                "p50_ratio": _ratio(p50_a, p50_b) if measured_a == measured_b else None,
                "accuracy_a": acc_a,
                "accuracy_b": acc_b,
                "accuracy_delta": acc_b - acc_a if acc_a is not None and acc_b is not None else None,
            }
        )
    return out


def _fmt(value, fmt: str, estimated: bool = False) -> str:
    if value is None:
        return "—"
    return fmt.format(value) + (" (estimated)" if estimated else "")


def markdown(a: Report, b: Report, name_a: str, name_b: str) -> str:
    """A markdown table (wide, so it is printed whole and pastes into a review)."""
    titles = ["Target", "Artifact", "p50 ms A", "p50 ms B", "B/A p50", "Accuracy A", "Accuracy B", "B-A accuracy"]
    lines = [f"A = {name_a}", f"B = {name_b}", "", "| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
    for row in compare(a, b):
        delta = row["accuracy_delta"]
        cells = [
            row["target"],
            row["artifact"],
            _fmt(row["p50_ms_a"], "{:.3f}", row["measured_a"] is False),
            _fmt(row["p50_ms_b"], "{:.3f}", row["measured_b"] is False),
            _fmt(row["p50_ratio"], "{:.2f}x"),
            _fmt(row["accuracy_a"], "{:.2%}"),
            _fmt(row["accuracy_b"], "{:.2%}"),
            _fmt(None if delta is None else delta * 100, "{:+.2f} pt"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
