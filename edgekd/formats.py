"""The export formats: the one table of what each format is (its runtime, the file a runtime
opens, whether the artifact is a folder, the precisions it ships), and `artifact_of(path)`
for a file written by `edgekd export`. The converters are in `stages/export.py`, by name."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from edgekd.errors import EdgekdError
from edgekd.io import sha256, size_mb


@dataclass(frozen=True)
class Format:
    name: str
    title: str
    runtime: str  # the runtime that benchmarks and verifies it
    suffix: str  # of what the export writes: a file, or a folder (`folder`) holding `opens`
    opens: str  # the file a runtime loads: `model.xml` inside the folder, or the artifact itself
    folder: bool = False
    precisions: tuple[str, ...] = ("fp32", "int8")


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("onnx", "ONNX", "onnxruntime", ".onnx", ".onnx"),
        Format("openvino", "OpenVINO IR", "openvino", "_openvino", "model.xml", folder=True),
        # for GPUs (runtime torch-cuda); fp32 only: fp16 is a load-time choice, and GPU int8 goes through ONNX
        Format("torch", "PyTorch (torch.export)", "torch", ".pt2", ".pt2", precisions=("fp32",)),
    )
}


@dataclass
class Artifact:
    name: str
    format: str
    precision: str
    runtime: str
    path: str  # the file a runtime opens (`Format.opens`)
    size_mb: float
    sha256: str

    def to_dict(self) -> dict:
        return asdict(self)


def format_of(path: Path) -> Format:
    """The format of a file a runtime opens (`student_int8.onnx`, `.../model.xml`, `model.pt2`)."""
    path = Path(path)
    for fmt in FORMATS.values():
        if path.name == fmt.opens or (not fmt.folder and path.suffix == fmt.suffix):
            return fmt
    opens = ", ".join(f"{f.title}: {'a folder with ' if f.folder else ''}{f.opens}" for f in FORMATS.values())
    raise EdgekdError(f"{path}: not a file edgekd exports ({opens})")


def artifact_root(path: Path) -> Path:
    """What to copy, hash or size of an artifact a runtime opens at `path`: the folder of a
    folder format (OpenVINO IR: model.xml + model.bin), else the file itself."""
    path = Path(path)
    return path.parent if format_of(path).folder else path


def artifact_of(path: Path) -> Artifact:
    """An exported file as an artifact; its precision read from the names edgekd writes."""
    path = Path(path)
    if not path.exists():
        raise EdgekdError(f"{path} does not exist")
    fmt, whole = format_of(path), artifact_root(path)
    precision = "int8" if "int8" in whole.name else "fp32"
    name = f"{fmt.name}-{precision}:{whole.name.removesuffix(fmt.suffix)}"
    return Artifact(name, fmt.name, precision, fmt.runtime, str(path), round(size_mb(whole), 3), sha256(whole))
