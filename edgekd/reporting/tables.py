"""A report's rows (one per artifact and target, joining export, verification and benchmark
facts), the recommended artifact and the Pareto front."""

from __future__ import annotations

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
