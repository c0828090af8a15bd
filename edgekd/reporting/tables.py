"""A report's rows (one per artifact and target, joining export, verification and benchmark
facts), the recommended artifact and the Pareto front."""

from __future__ import annotations

from edgekd.reporting.schema import ArtifactFacts, BoardEstimates, Row, Verification

NUMERICS = {"runtime": "this host", "emulated": "emulated", "reference": "reference"}


def _target_figures(check: Verification) -> dict:
    """A target's accuracy and agreement as verification found them there (see `stages.verify`)."""
    if check.method == "not verified":
        numerics = "not verified"
    else:
        label = NUMERICS.get(check.method, check.method)
        numerics = f"{label} ({check.images} images)" if check.images else label
    return {"accuracy": check.accuracy, "agreement": check.agreement, "numerics": numerics}


def table_rows(artifacts: list[ArtifactFacts], bench_rows: list[Row], on_host: bool) -> list[Row]:
    """Joins each artifact's export and verification facts with its benchmark on one target.

    On this host the accuracy is the one its runtime produced here; on another target it is
    the one verification expects there, with how it was checked.
    """
    by_name = {a.name: a for a in artifacts}
    rows = []
    for bench in bench_rows:
        art = by_name[bench.artifact]
        check = art.verification
        if on_host:
            figures = {"accuracy": check.host_accuracy, "agreement": check.host_agreement, "numerics": "this host"}
            figures |= {"checked_by": None, "verify_note": None}
        else:
            figures = _target_figures(check) | {"checked_by": check.checked_by, "verify_note": check.note}
        measured = bench.model_dump(exclude_unset=True, exclude={"artifact", "executed"})
        joined = {"artifact": art.name, "precision": art.precision, "runtime": art.runtime, "path": art.path}
        joined |= {"size_mb": art.size_mb} | figures | measured
        # False for a cost model's estimate; None when nothing ran
        joined["measured"] = (True if bench.measured is None else bench.measured) if bench.status == "ok" else None
        rows.append(Row(**joined, executed=bench.executed))
    return rows


def latency_rows(rows: list[Row]) -> list[Row]:
    """Rows that ran at batch 1 with a known accuracy: what latency comparisons are made on
    (a GPU's throughput-batch rows are reported beside them, not ranked against them)."""
    return [r for r in rows if r.status == "ok" and r.accuracy is not None and (r.batch or 1) == 1]


TOLERANCE = 0.01  # accuracy within this of the best counts as equal when recommending


def recommend(rows: list[Row], tolerance: float = TOLERANCE) -> tuple[str | None, list[str]]:
    """The fastest artifact within `tolerance` of the best accuracy, and notes on int8 that
    did not pay off: edgekd never recommends a slower 'optimized' artifact."""
    ok = latency_rows(rows)
    if not ok:
        return None, []
    best = max(r.accuracy for r in ok)
    # on a tie fp32 wins: the notes below advise fp32 wherever int8 is not faster
    choice = min((r for r in ok if r.accuracy >= best - tolerance), key=lambda r: (r.p50_ms, r.precision == "int8"))
    notes = []
    for runtime in sorted({r.runtime for r in ok}):
        pair = {r.precision: r for r in ok if r.runtime == runtime}
        if "fp32" in pair and "int8" in pair and pair["int8"].p50_ms >= pair["fp32"].p50_ms:
            notes.append(_int8_not_faster(runtime, pair["int8"], pair["fp32"], best, tolerance))
    return choice.name, notes


def _int8_not_faster(runtime: str, int8: Row, fp32: Row, best: float, tolerance: float) -> str:
    """Advises fp32 only under the recommendation's own rule (within `tolerance` of the best
    accuracy), so a note never contradicts the recommended artifact."""
    times = f"{int8.p50_ms:.3f} vs {fp32.p50_ms:.3f} ms p50"
    if fp32.accuracy >= best - tolerance:
        return f"int8 is not faster than fp32 in {runtime} here ({times}): ship fp32 for this runtime"
    gap = (best - fp32.accuracy) * 100
    return (
        f"int8 is not faster than fp32 in {runtime} here ({times}), but fp32 is {gap:.1f} accuracy points below "
        f"the best, more than the {tolerance * 100:g} the recommendation allows: fp32 is not advised"
    )


def pareto(rows: list[Row]) -> list[str]:
    """Artifacts no other artifact beats on both latency and accuracy, fastest first."""
    front, best = [], -1.0
    for row in sorted(latency_rows(rows), key=lambda r: (r.p50_ms, -r.accuracy)):
        if row.accuracy > best:
            front.append(row.name)
            best = row.accuracy
    return front


def recommend_from_estimates(rows: list[Row], estimates: list[BoardEstimates]) -> dict[str, str]:
    """Per board, the artifact `recommend` picks from this target's accuracy and the board's
    estimated p50 (no board measured; an artifact without an estimate is not ranked)."""
    chosen = {}
    for board in estimates:
        ranked = [
            row.model_copy(update={"status": "ok", "p50_ms": guess.p50_ms, "measured": False})
            for row, guess in zip(rows, board.rows)
            if guess.status == "ok"
        ]
        choice, _ = recommend(ranked)
        if choice:
            chosen[board.board] = choice
    return chosen
