"""Copy-paste code for shipping the recommended artifact: each format's app snippets
(`edgekd.formats.Format.snippets`: Python for every runtime, Kotlin for LiteRT on Android),
written for that artifact in each format that exported its precision."""

from __future__ import annotations

import os
from pathlib import Path

from edgekd.formats import FORMATS, read_preprocessing
from edgekd.reporting.schema import ArtifactFacts, Snippet, Table


def snippets(target: str, tables: list[Table], artifacts: list[ArtifactFacts], out_dir: Path) -> Snippet | None:
    """For the recommended artifact of the build's `target` (else of the first table that has one):
    the code by snippet key (`Format.snippets`); paths relative to out_dir."""
    chosen = next((t for t in sorted(tables, key=lambda t: t.target != target) if t.recommended), None)
    if chosen is None:
        return None
    by_name = {a.name: a for a in artifacts}
    row = next(r for r in chosen.rows if r.name == chosen.recommended)
    precision = by_name[row.artifact].precision
    result = {"artifact": chosen.recommended, "target": chosen.target, "precision": precision}
    for fmt in FORMATS.values():
        # the recommended precision, in this format
        same = [a for a in artifacts if a.precision == precision and a.format == fmt.name]
        if same and fmt.snippets:
            path = os.path.relpath(same[0].path, out_dir)
            pre = read_preprocessing(Path(same[0].path))
            result |= {snippet.key: snippet.write(pre, path) for snippet in fmt.snippets}
    return Snippet(**result)
