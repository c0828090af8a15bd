"""Every kind of bad input edgekd handles, declared on the test that proves it: the one source
of the README's bad-input table (`python -m tests.bad_inputs` rewrites it there;
test_bad_input_table fails while the README is out of step).

    @bad_input("files", "a symbolic link loop in a class folder", "skipped, counted in the log")
    def test_symlink_loop(...): ...
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path

GROUPS = {
    "files": "Files and folders in --data",
    "layout": "Data layout and images",
    "settings": "Settings",
    "models": "Teacher, checkpoint and artifact files",
    "runs": "Runs: kills, full disks, two builds",
}
BEGIN, END = "<!-- bad-inputs:begin -->", "<!-- bad-inputs:end -->"


@dataclass(frozen=True)
class BadInput:
    group: str
    kind: str
    handling: str
    test: str


KINDS: list[BadInput] = []


def bad_input(group: str, kind: str, handling: str):
    """Declares that the decorated test proves how edgekd handles `kind`."""
    if group not in GROUPS:
        raise ValueError(f"unknown group {group!r}; one of {sorted(GROUPS)}")

    def declare(test):
        KINDS.append(BadInput(group, kind, handling, f"{test.__module__.rsplit('.', 1)[-1]}::{test.__name__}"))
        return test

    return declare


def collect() -> list[BadInput]:
    """Imports every test module, which declares its kinds; the kinds in README order."""
    for path in sorted(Path(__file__).parent.glob("test_*.py")):
        importlib.import_module(f"tests.{path.stem}")
    order = list(GROUPS)
    unique = {(k.group, k.kind): k for k in KINDS}.values()
    # by group, then test module, then declaration order: the same whatever order pytest imported the modules in
    return sorted(unique, key=lambda k: (order.index(k.group), k.test.split("::")[0]))


def table(kinds: list[BadInput]) -> str:
    lines = [f"{len(kinds)} kinds of bad input, each proved by the test named beside it.", ""]
    for group, title in GROUPS.items():
        rows = [k for k in kinds if k.group == group]
        if not rows:
            continue
        lines += [f"**{title}**", "", "| Input | What edgekd does | Test |", "|---|---|---|"]
        lines += [f"| {k.kind} | {k.handling} | `{k.test}` |" for k in rows] + [""]
    return "\n".join(lines).rstrip() + "\n"


README = Path(__file__).parent.parent / "README.md"


def readme_table(text: str) -> str:
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def with_table(text: str, new_table: str) -> str:
    head, rest = text.split(BEGIN, 1)
    return f"{head}{BEGIN}\n{new_table}{END}{rest.split(END, 1)[1]}"


if __name__ == "__main__":
    # Run as a script this file is `__main__`, not `tests.bad_inputs`, which the test modules
    # import and declare into: read the declarations from that module.
    from tests import bad_inputs

    README.write_text(with_table(README.read_text(), bad_inputs.table(bad_inputs.collect())))
    sys.stdout.write(f"{README}: bad-input table rewritten\n")
