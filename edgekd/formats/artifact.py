"""An exported file as an `Artifact`: which format it is, what to copy or hash of it, and the
preprocessing it carries (`read_preprocessing`, what `edgekd predict` and the app snippets read)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from pydantic import ValidationError

from edgekd.errors import EdgekdError
from edgekd.formats.base import FORMATS, METADATA_KEYS, Format, Preprocessing
from edgekd.io import sha256, size_mb


def student_key(precision: str, quantizer: str | None) -> str:
    """The key of the trained student an artifact of `precision` comes from: "fp32" for the
    distilled student, else its QAT backend (`Format.quantizer`: nncf, xnnpack)."""
    return "fp32" if precision == "fp32" else quantizer


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
    def student_key(self) -> str:
        """The trained student it was exported from (`student_key`)."""
        return student_key(self.precision, self.quantizer)


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


def predictable_format(artifact: Path) -> Format:
    """The format of an artifact `edgekd predict` can run: one that carries its preprocessing."""
    fmt = format_of(artifact)
    if not fmt.predicts:
        names = " or ".join(f.name for f in FORMATS.values() if f.predicts)
        raise EdgekdError(f"{artifact}: edgekd predict runs {names} artifacts, not {fmt.title}")
    return fmt


def _raw_metadata(artifact: Path) -> dict[str, str]:
    try:
        fmt = predictable_format(artifact)
        if fmt.read_metadata is not None:
            return fmt.read_metadata(artifact)
        from edgekd.runtime import open_session

        return open_session(fmt.runtime, str(artifact), 1).metadata()
    except EdgekdError:
        raise
    except Exception as e:  # each runtime raises its own types for an unreadable model
        raise EdgekdError(f"cannot read {artifact} as a model: {str(e).splitlines()[0][:200]}") from None


def read_preprocessing(artifact: Path) -> Preprocessing:
    raw = _raw_metadata(Path(artifact))
    missing = [k for k in ("classes", "input_size", "mean", "std") if k not in raw]
    if missing:
        raise EdgekdError(
            f"{artifact} carries no preprocessing metadata ({', '.join(missing)} missing); "
            "export it with `edgekd export` or `edgekd build`"
        )
    try:
        return Preprocessing(**{k: json.loads(v) for k, v in raw.items() if k in METADATA_KEYS})
    except (json.JSONDecodeError, ValidationError) as e:
        raise EdgekdError(f"{artifact}: its preprocessing metadata is malformed ({str(e).splitlines()[0]})") from None
