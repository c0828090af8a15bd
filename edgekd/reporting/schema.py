"""report.json, typed: `Report` and what it holds. The pipeline builds one `Report`, and
report.json, report.md, report.html, the console and `edgekd report A B` render it;
`docs/report-schema.md` is generated from it (`python -m edgekd.reporting.schema`; a test
fails while the two differ)."""

from __future__ import annotations

import re
import sys
import types
import typing
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from edgekd.formats import FORMATS, app_snippets
from edgekd.targets import Int8Flavour

SCHEMA = "edgekd.report/1"
DOC = Path(__file__).resolve().parents[2] / "docs" / "report-schema.md"


class Part(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Environment(Part):
    machine: str = Field(description="the host's architecture (`platform.machine()`)")
    cpu: str = Field(description="the host CPU's model name")
    cores: int | None = Field(description="logical cores")
    int8_flags: dict[str, bool] = Field(description="CPU features that decide int8 kernels' arithmetic (VNNI, AMX)")
    python: str = Field(description="Python version")
    os: str = Field(description="operating system (`platform.platform()`)")
    packages: dict[str, str | None] = Field(description="versions of edgekd and the libraries behind the figures")


class DataFacts(Part):
    path: str = Field(description="the data folder, or the embedded dataset's name")
    classes: list[str] = Field(description="class names, in the order of the model's outputs")
    train_samples: int = Field(description="images trained on")
    val_samples: int = Field(description="images every accuracy and agreement is measured on")
    input_size: int = Field(description="side of the square model input, pixels")


class TeacherFacts(Part):
    source: str = Field(description="the teacher file(s), or the architecture edgekd trained and where")
    val_accuracy: float = Field(description="top-1 on the val images (ensembles: of the mean softmax)")


class StudentFacts(Part):
    arch: str = Field(description="the student architecture (an `edgekd.models` name)")
    val_accuracy_fp32: float = Field(description="top-1 of the distilled PyTorch student")
    val_accuracy_int8: float | None = Field(
        description="top-1 of the fake-quantized QAT student (NNCF's when several QATs ran); null without QAT"
    )
    val_accuracy_int8_by_quantizer: dict[str, float] = Field(
        {}, description="top-1 of each QAT backend's fake-quantized student, by backend"
    )


class Verification(Part):
    artifact: str = Field(description="the artifact's name")
    method: Literal["runtime", "emulated", "reference", "not verified"] = Field(
        description="how the target's figures were obtained: `runtime` (this host is the target), `emulated` "
        "(the target's kernels under qemu), `reference` (the artifact's reference semantics), `not verified`"
    )
    checked_by: str = Field(description="the same in words: runtime, version, kernels; the reason when not verified")
    accuracy: float | None = Field(description="top-1 on the target; null when not verified")
    agreement: float | None = Field(description="fraction of images where the artifact's top-1 is PyTorch's")
    min_agreement: float = Field(description="the agreement required (verify.min_agreement_fp32 / _int8)")
    passed: bool = Field(description="agreement >= min_agreement on the target; an unverified artifact never fails")
    reference_accuracy: float = Field(description="top-1 of the PyTorch model the artifact was exported from")
    host_accuracy: float = Field(description="top-1 of the artifact in its runtime on this host")
    host_agreement: float = Field(description="agreement with PyTorch on this host")
    max_abs_logit_diff: float | None = Field(description="largest logit difference from PyTorch on the target")
    images: int = Field(0, description="val images behind the target's figures (emulation may use fewer)")
    note: str | None = Field(None, description="why this host's figures differ from the target's, when they do")


class ArtifactFacts(Part):
    name: str = Field(description="`<format>-<precision>`, e.g. `onnx-int8`")
    format: str = Field(description=f"a name in edgekd.formats.FORMATS: {', '.join(FORMATS)}")
    precision: Literal["fp32", "int8"] = Field(description="the weights' and kernels' precision")
    quantizer: str | None = Field(
        None, description="int8: the QAT backend its weights come from (edgekd.quantizers: nncf, xnnpack)"
    )
    runtime: str = Field(description="the runtime that verifies and benchmarks it")
    path: str = Field(description="the file a runtime opens")
    size_mb: float = Field(description="on disk, MB (10^6 bytes); a folder format counts every file")
    sha256: str = Field(description="of the file, or of a folder format's files in name order")
    verification: Verification = Field(description="how far the artifact agrees with its PyTorch model")


class Row(Part):
    """One artifact on one target: measured, estimated, not run or failed."""

    artifact: str = Field(description="the artifact's name")
    status: Literal["ok", "not run", "failed"] = Field(description="`ok`: figures below come from a run or estimate")
    reason: str | None = Field(None, description="why it did not run, or how it failed")
    precision: str | None = Field(None, description="fp32, int8, or fp16 for a GPU run of the fp32 artifact")
    runtime: str | None = Field(None, description="the runtime (GPU rows: onnxruntime-cuda, tensorrt, torch-cuda)")
    variant: str | None = Field(None, description="GPU rows: how the artifact was run (e.g. fp16 CUDA graph)")
    path: str | None = Field(None, description="the artifact's file")
    size_mb: float | None = Field(None, description="the artifact's size, MB")
    accuracy: float | None = Field(None, description="top-1 on this target (see `numerics`)")
    agreement: float | None = Field(None, description="top-1 agreement with the PyTorch model on this target")
    numerics: str | None = Field(None, description="where accuracy and agreement come from: this host, emulated...")
    checked_by: str | None = Field(None, description="the emulating runtime, for another target's table")
    verify_note: str | None = Field(None, description="a host-only difference, for another target's table")
    measured: bool | None = Field(None, description="true: measured; false: ESTIMATED by a cost model; null: no run")
    device: str | None = Field(None, description="the board (ssh) or GPU it was measured on")
    threads: int | None = Field(None, description="runtime threads")
    batch: int | None = Field(None, description="images per run")
    runs: int | None = Field(None, description="timed runs behind the percentiles")
    load_ms: float | None = Field(None, description="session creation, ms")
    first_ms: float | None = Field(None, description="the first run after loading, ms")
    p50_ms: float | None = Field(None, description="median latency of one run, ms")
    p90_ms: float | None = Field(None, description="90th percentile latency, ms")
    p99_ms: float | None = Field(None, description="99th percentile latency, ms")
    mean_ms: float | None = Field(None, description="mean latency, ms")
    fps: float | None = Field(None, description="images per second: batch x 1000 / mean_ms")
    peak_rss_mb: float | None = Field(None, description="peak resident memory of the measuring process, MB")
    runtime_rss_mb: float | None = Field(None, description="of which after loading the runtime and model, MB")
    executed: str | None = Field(None, description="what the kernels ran as: precision, int8 convolutions of all")
    options: dict | None = Field(None, description="GPU rows: the session options of the variant")
    estimate: str | None = Field(None, description="estimates: p50 with its error band, in words")
    band: float | None = Field(None, description="estimates: the relative error band (leave-one-out)")
    board: str | None = Field(None, description="estimates: the board the cost model describes")
    estimated_by: str | None = Field(None, description="estimates: the cost model and the data it was fitted to")
    scaled_by: str | None = Field(
        None, description="estimates: the runtime's published ratio to ncnn, or how a timing model carries over to it"
    )
    load_instructions_m: float | None = Field(
        None,
        description="estimates from ARM instructions: A64 instructions the runtime ran loading the model, millions",
    )
    profiled_on: str | None = Field(None, description="estimates from ARM instructions: the emulated core (qemu -cpu)")
    instructions_m: dict[str, float] | None = Field(
        None, description="estimates from ARM instructions: A64 instructions per inference, all threads, millions"
    )
    extrapolated: str | None = Field(None, description="estimates: why the graph lies outside the fitted range")

    @property
    def name(self) -> str:
        """An artifact, or an artifact run one way (GPU rows: one artifact, several variants)."""
        return f"{self.artifact} ({self.variant})" if self.variant else self.artifact


class BoardEstimates(Part):
    target: str = Field(description="the board's target profile")
    board: str = Field(description="the board, in words")
    rows: list[Row] = Field(description="one ESTIMATED row per artifact, in the table's order")


class Table(Part):
    """One target's table: the host's (measured here), and the build's target when it is another."""

    target: str = Field(description="`host`, or the target profile's name")
    measured_on: str | None = Field(None, description="the ssh device the rows were measured on")
    description: str = Field(description="the target in words")
    arch: str = Field(description="x86_64, aarch64 or cuda")
    measured: bool = Field(description="whether any row was measured (estimates are not measurements)")
    threads: int = Field(description="runtime threads the rows ran with")
    int8: Int8Flavour = Field(description="the target's int8 scheme, which the int8 artifacts were trained for")
    rows: list[Row] = Field(description="one row per artifact (GPU targets: per runtime, variant and batch)")
    estimates: list[BoardEstimates] = Field([], description="per board of this architecture, when none is measured")
    recommended: str | None = Field(description="the fastest artifact within 1 point of the best accuracy")
    recommended_by_board: dict[str, str] | None = Field(None, description="from the estimates, per board")
    notes: list[str] = Field(description="advice the recommendation's rule gives (e.g. int8 not faster here)")
    pareto: list[str] = Field(description="artifacts no other beats on both latency and accuracy, fastest first")
    plot: str | None = Field(description="the accuracy-vs-latency plot (PNG)")


class SnippetHead(Part):
    artifact: str = Field(description="the artifact the code loads: the build target's recommendation")
    target: str = Field(description="the table it was recommended in")
    precision: str = Field(description="its precision")


# a field per app snippet the registered formats write (`edgekd.formats.Format.snippets`)
Snippet = create_model(
    "Snippet",
    __base__=SnippetHead,
    **{s.key: (str | None, Field(None, description=s.description)) for s in app_snippets()},
)


class Report(Part):
    """report.json: everything a build measured, each figure with how it was obtained."""

    schema_: str = Field(alias="schema", description=f"`{SCHEMA}`")
    created: str = Field(description="when the report was written, ISO 8601 UTC")
    target: str = Field(description="the build's --target")
    edgekd_version: str = Field(description="the edgekd that built it")
    config: dict = Field(description="the resolved pipeline config (as `edgekd build --dry-run` prints it)")
    environment: Environment = Field(description="the host that built, verified and measured")
    data: DataFacts = Field(description="the data trained and measured on")
    teacher: TeacherFacts = Field(description="the teacher distilled from")
    student: StudentFacts = Field(description="the trained student, in PyTorch")
    artifacts: list[ArtifactFacts] = Field(description="every exported file, with its verification")
    tables: list[Table] = Field(description="the host's table, then the build target's when it is another")
    snippet: Snippet | None = Field(None, description="ship-it code for the recommended artifact")

    def to_json(self) -> dict:
        """report.json's content: the keys each part was made or read with (an absent key stays absent)."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


def _type_name(annotation) -> str:
    """`list[Row]`, `float | None`: an annotation as the doc shows it."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    if isinstance(annotation, (types.UnionType,)) or typing.get_origin(annotation) is typing.Union:
        return " \\| ".join(_type_name(a) for a in typing.get_args(annotation)).replace("NoneType", "null")
    if typing.get_origin(annotation) is Literal:
        return " \\| ".join(f"`{a!r}`".replace("'", '"') for a in typing.get_args(annotation))
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is not None:
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in args)}]"
    return "null" if annotation is type(None) else re.sub(r"^<class '(.*)'>$", r"\1", str(annotation))


def markdown() -> str:
    models = [Report, Environment, DataFacts, TeacherFacts, StudentFacts, ArtifactFacts, Verification, Table,
              Int8Flavour, Row, BoardEstimates, Snippet]  # fmt: skip
    lines = [
        "# report.json schema",
        "",
        f"Generated from `edgekd/reporting/schema.py` (`python -m edgekd.reporting.schema`); schema `{SCHEMA}`.",
        "Every report is validated against it before it is written. Fractions (accuracy, agreement) are in 0..1.",
        "",
    ]
    for model in models:
        lines += [f"## {model.__name__}", ""]
        doc = (model.__doc__ or "").strip()
        if doc and model is not Int8Flavour:
            lines += [" ".join(doc.split()), ""]
        lines += ["| Key | Type | Required | Meaning |", "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            key = field.alias or name
            meaning = (field.description or "").replace("|", "\\|")
            required = "yes" if field.is_required() else "no"
            lines.append(f"| `{key}` | {_type_name(field.annotation)} | {required} | {meaning} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    DOC.write_text(markdown())
    sys.stdout.write(f"{DOC}: written\n")
