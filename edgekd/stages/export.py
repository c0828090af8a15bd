"""Export each trained model to the configured formats, with the metadata an app needs. Each
format, its converter (`torch2<format>`) included, is one module of `edgekd.formats`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from edgekd.errors import EdgekdError
from edgekd.formats import FORMATS, Artifact, Int8Inputs, artifact_of, metadata, student_key
from edgekd.quantizers import QUANTIZERS
from edgekd.training.checkpoints import QatCheckpoint, StudentCheckpoint
from edgekd.training.loop import load_checkpoint

__all__ = ["ExportConfig", "Int8Inputs", "Students", "export", "load_checkpoints"]


class ExportConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    formats: list[str] = ["onnx", "openvino"]
    opset: int = Field(17, ge=13)


def export(
    cfg: ExportConfig,
    models: dict[str, nn.Module],
    preprocessing: dict,
    out_dir: Path,
    int8: Int8Inputs | None = None,
) -> list[Artifact]:
    """Exports each trained model to the configured formats it serves: `models` is keyed by
    `edgekd.formats.student_key` ("fp32"; else the QAT backend: "nncf" for ONNX and OpenVINO,
    "xnnpack" for ExecuTorch, LiteRT and ncnn). NNCF's int8 model needs `int8`. The int8 scheme
    goes into the metadata too, as JSON, for apps."""
    # the formats' names were checked when the config was (`edgekd.config.check_names`)
    artifacts = []
    for precision in ("fp32", "int8"):
        for name in cfg.formats:
            fmt = FORMATS[name]
            model = models.get(student_key(precision, fmt.quantizer)) if precision in fmt.precisions else None
            if model is None:
                continue
            meta = metadata(preprocessing, precision)
            if precision == "int8" and int8 is not None:
                meta["int8"] = json.dumps(QUANTIZERS.get(fmt.quantizer).scheme(int8.flavour).model_dump())
            path = fmt.convert(model, out_dir / f"student_{precision}{fmt.suffix}", meta, cfg.opset, int8)
            # the precision and backend are known here, not worked out again from the file's name
            quantizer = fmt.quantizer if precision == "int8" else None
            artifact = replace(artifact_of(path), name=f"{name}-{precision}", precision=precision, quantizer=quantizer)
            artifacts.append(artifact)
    return artifacts


@dataclass(frozen=True)
class Student:
    """One trained student: the distilled one (fp32), or a QAT backend's fake-quantized one."""

    model: nn.Module
    checkpoint: StudentCheckpoint  # QatCheckpoint for a QAT's: its backend, int8 scheme and images


@dataclass
class Students:
    """The trained students of a build or of `edgekd export`'s files, keyed by QAT backend
    (`student_key`): "fp32" for the distilled student, else the backend (nncf, xnnpack)."""

    by_key: dict[str, Student] = field(default_factory=dict)

    @property
    def preprocessing(self) -> dict:
        """The distilled student's (each QAT checkpoint carries the same), else the first's."""
        return (self.by_key.get("fp32") or next(iter(self.by_key.values()))).checkpoint.preprocessing

    @property
    def int8(self) -> Int8Inputs | None:
        """What the int8 export needs: NNCF's QAT's calibration and scheme, else the first QAT's."""
        chosen = None
        for student in self.by_key.values():
            if isinstance(student.checkpoint, QatCheckpoint):
                chosen = Int8Inputs.choose(chosen, student.checkpoint)
        return chosen

    def models(self) -> dict[str, nn.Module]:
        """As `export` takes them, by `student_key`."""
        return {key: student.model for key, student in self.by_key.items()}

    def missing_int8(self, formats: list[str]) -> list[str]:
        """Why an int8 format in `formats` will not be exported: no checkpoint of its QAT backend."""
        return [
            f"{name}-int8 not exported: it needs a QAT checkpoint from `edgekd quantize --quantizer {fmt.quantizer}`"
            for name, fmt in ((n, FORMATS[n]) for n in formats if n in FORMATS)
            if "int8" in fmt.precisions and fmt.quantizer not in self.by_key
        ]


def load_checkpoints(paths: list[Path]) -> Students:
    """The students in `paths`: a distilled student (student_fp32.pt) and QAT checkpoints, at
    most one per backend, told apart by their content, not their names."""
    from edgekd.stages.distill import load_student
    from edgekd.stages.quantize import load_quantized

    loaded = Students()
    for path in paths:
        if "int8" in load_checkpoint(path):  # a QAT checkpoint records the int8 scheme it trained
            model, ckpt = load_quantized(path)
            key = ckpt.quantizer
        else:
            (model, ckpt), key = load_student(path), "fp32"
        if key in loaded.by_key:
            raise EdgekdError(f"{path}: a second {key} checkpoint; pass one student and one QAT checkpoint per backend")
        loaded.by_key[key] = Student(model, ckpt)
    return loaded
