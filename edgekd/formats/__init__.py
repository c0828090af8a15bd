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
    quantizer: str = "nncf"  # the `edgekd.quantizers` backend whose QAT its int8 artifact comes from
    extra: str | None = None  # the pip extra its converter and runtime need (None: the base install)

    def install_hint(self) -> str:
        return f"pip install 'edgekd[{self.extra}]'"


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("onnx", "ONNX", "onnxruntime", ".onnx", ".onnx"),
        Format("openvino", "OpenVINO IR", "openvino", "_openvino", "model.xml", folder=True),
        # for GPUs (runtime torch-cuda); fp32 only: fp16 is a load-time choice, and GPU int8 goes through ONNX
        Format("torch", "PyTorch (torch.export)", "torch", ".pt2", ".pt2", precisions=("fp32",)),
        # ExecuTorch with the XNNPACK delegate (ARM and x86 CPUs): int8 from PT2E QAT in XNNPACK's scheme
        Format(
            "executorch", "ExecuTorch (XNNPACK)", "executorch", ".pte", ".pte", quantizer="xnnpack", extra="executorch"
        ),  # fmt: skip
        # LiteRT for Android: its int8 is the same PT2E QAT as ExecuTorch's (LiteRT's kernels are XNNPACK's too)
        Format("tflite", "LiteRT (.tflite)", "litert", ".tflite", ".tflite", quantizer="xnnpack", extra="tflite"),
        # ncnn through pnnx; its int8 is the same PT2E QAT's, in the layout ncnn's ncnn2int8 writes
        Format(
            "ncnn", "ncnn (pnnx)", "ncnn", "_ncnn", "model.ncnn.param", folder=True, quantizer="xnnpack", extra="ncnn"
        ),
    )
}


def int8_key(quantizer: str) -> str:
    """The key of the int8 model a QAT backend trains: "int8" for NNCF's, "int8-<quantizer>" for another's."""
    return "int8" if quantizer == "nncf" else f"int8-{quantizer}"


def model_key(fmt: Format, precision: str) -> str:
    """The trained model an artifact of `fmt` at `precision` is exported from: "fp32", or the
    int8 model of the format's QAT (`int8_key`)."""
    return "fp32" if precision == "fp32" else int8_key(fmt.quantizer)


@dataclass
class Artifact:
    name: str
    format: str
    precision: str
    runtime: str
    path: str  # the file a runtime opens (`Format.opens`)
    size_mb: float
    sha256: str
    quantizer: str | None = None  # int8: the QAT backend its weights come from (`Format.quantizer`)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def model_key(self) -> str:
        """The trained model it was exported from (`model_key`)."""
        return model_key(FORMATS[self.format], self.precision)


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
    quantizer = fmt.quantizer if precision == "int8" else None
    return Artifact(
        name, fmt.name, precision, fmt.runtime, str(path), round(size_mb(whole), 3), sha256(whole), quantizer
    )
