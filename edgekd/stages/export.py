"""Export each trained model to the configured formats, with the metadata an app needs. Each
format, its converter (`torch2<format>`) included, is one module of `edgekd.formats`."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from edgekd.errors import EdgekdError
from edgekd.formats import FORMATS, Artifact, Int8Inputs, artifact_of, int8_key, metadata, model_key
from edgekd.quantizers import QUANTIZERS
from edgekd.training.loop import load_checkpoint

__all__ = ["Checkpoints", "ExportConfig", "Int8Inputs", "export", "load_checkpoints"]


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
    `edgekd.formats.model_key` ("fp32"; "int8", NNCF's QAT, for ONNX and OpenVINO; "int8-xnnpack"
    for ExecuTorch). NNCF's int8 model needs `int8`. The int8 scheme goes into the metadata too,
    as JSON, for apps."""
    unknown = [f for f in cfg.formats if f not in FORMATS]
    if unknown:
        raise EdgekdError(f"unknown export format {unknown}; choose from: {', '.join(FORMATS)}")
    artifacts = []
    for precision in ("fp32", "int8"):
        for name in cfg.formats:
            fmt = FORMATS[name]
            model = models.get(model_key(fmt, precision)) if precision in fmt.precisions else None
            if model is None:
                continue
            meta = metadata(preprocessing, precision)
            if precision == "int8" and int8 is not None:
                meta["int8"] = json.dumps(QUANTIZERS.get(fmt.quantizer).scheme(int8.flavour).model_dump())
            path = fmt.convert(model, out_dir / f"student_{precision}{fmt.suffix}", meta, cfg.opset, int8)
            artifacts.append(replace(artifact_of(path), name=f"{name}-{precision}"))
    return artifacts


@dataclass
class Checkpoints:
    """Trained students read from checkpoint files, as `export` takes them."""

    models: dict[str, nn.Module]  # by `edgekd.formats.model_key`
    preprocessing: dict
    int8: Int8Inputs | None

    def missing_int8(self, formats: list[str]) -> list[str]:
        """Why an int8 format in `formats` will not be exported: no checkpoint of its QAT backend."""
        return [
            f"{name}-int8 not exported: it needs a QAT checkpoint from `edgekd quantize --quantizer {fmt.quantizer}`"
            for name, fmt in ((n, FORMATS[n]) for n in formats if n in FORMATS)
            if "int8" in fmt.precisions and model_key(fmt, "int8") not in self.models
        ]


def load_checkpoints(paths: list[Path]) -> Checkpoints:
    """The students in `paths`: a distilled student (student_fp32.pt) and QAT checkpoints, at
    most one per backend, told apart by their content, not their names."""
    from edgekd.stages.distill import load_student
    from edgekd.stages.quantize import load_quantized

    loaded = Checkpoints({}, {}, None)
    for path in paths:
        if "int8" in load_checkpoint(path):  # a QAT checkpoint records the int8 scheme it trained
            model, ckpt = load_quantized(path)
            key = int8_key(ckpt.quantizer)
            loaded.int8 = Int8Inputs.choose(loaded.int8, ckpt)
        else:
            (model, ckpt), key = load_student(path), "fp32"
        if key in loaded.models:
            raise EdgekdError(f"{path}: a second {key} checkpoint; pass one student and one QAT checkpoint per backend")
        loaded.models[key], loaded.preprocessing = model, ckpt.preprocessing
    return loaded
