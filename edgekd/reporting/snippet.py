"""Copy-paste code for shipping the recommended artifact: each format's app snippets
(`edgekd.formats.Format.snippets`: Python for every runtime, Kotlin for LiteRT on Android),
written for that artifact in each format that exported its precision."""

from __future__ import annotations

import os
from pathlib import Path

from edgekd.formats import FORMATS, read_preprocessing
from edgekd.reporting.tables import row_name


def snippets(report: dict, out_dir: Path) -> dict | None:
    """For the recommended artifact of the build's target (else of the first table that has one):
    {artifact, target, precision, and code by snippet key}; paths relative to out_dir."""
    tables = sorted(report["tables"], key=lambda t: t["target"] != report["target"])
    chosen = next((t for t in tables if t.get("recommended")), None)
    if chosen is None:
        return None
    by_name = {a["name"]: a for a in report["artifacts"]}
    row = next(r for r in chosen["rows"] if row_name(r) == chosen["recommended"])
    precision = by_name[row["artifact"]]["precision"]
    result = {"artifact": chosen["recommended"], "target": chosen["target"], "precision": precision}
    for fmt in FORMATS.values():
        # the recommended precision, in this format
        same = [a for a in report["artifacts"] if a["precision"] == precision and a["format"] == fmt.name]
        if same and fmt.snippets:
            path = os.path.relpath(same[0]["path"], out_dir)
            pre = read_preprocessing(Path(same[0]["path"]))
            result |= {snippet.key: snippet.write(pre, path) for snippet in fmt.snippets}
    return result
