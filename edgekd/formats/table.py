"""The README's table of export formats, written from the registry (`python -m edgekd.formats.table`;
a test checks the README against it): what each format writes, which runtime runs it, where its
int8 comes from and what to install."""

from __future__ import annotations

import sys
from pathlib import Path

from edgekd.formats import FORMATS
from edgekd.formats.base import Format

README = Path(__file__).resolve().parents[2] / "README.md"
BEGIN, END = "<!-- formats:begin: python -m edgekd.formats.table -->", "<!-- formats:end -->"


def _files(fmt: Format) -> str:
    precisions = fmt.precisions[0] if len(fmt.precisions) == 1 else "{" + ",".join(fmt.precisions) + "}"
    written = f"student_{precisions}{fmt.suffix}"
    return f"`{written}/{fmt.opens}`" if fmt.folder else f"`{written}`"


def _about(fmt: Format) -> str:
    doc = sys.modules[fmt.convert.__module__].__doc__ or ""
    return " ".join(doc.split()).split(". ")[0].rstrip(".")


def markdown() -> str:
    lines = ["| format | writes | runtime | int8 from | install | what it is |", "|---|---|---|---|---|---|"]
    for fmt in FORMATS.values():
        int8 = f"`{fmt.quantizer}` QAT" if "int8" in fmt.precisions else "fp32 only"
        lines.append(
            f"| `{fmt.name}` | {_files(fmt)} | {fmt.runtime} | {int8} | `{fmt.install_hint()}` | {_about(fmt)} |"
        )
    return "\n".join(lines) + "\n"


def with_table(text: str) -> str:
    head, rest = text.split(BEGIN, 1)
    return f"{head}{BEGIN}\n{markdown()}{END}{rest.split(END, 1)[1]}"


if __name__ == "__main__":
    README.write_text(with_table(README.read_text()))
    sys.stdout.write(f"{README}: formats table written\n")
