"""Export to ONNX and OpenVINO IR, fp32 and int8, with the metadata an app needs.

One table of formats drives export, verification and benchmarking: each format names the
runtime that runs it and the small function that converts to it.
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from edgekd.errors import EdgekdError
from edgekd.io import atomic_path, sha256, size_mb


@dataclass
class Artifact:
    name: str
    format: str
    precision: str
    runtime: str
    path: str
    size_mb: float
    sha256: str

    def to_dict(self) -> dict:
        return asdict(self)


def metadata(preprocessing: dict, precision: str) -> dict[str, str]:
    """Flat string key/values: the form both ONNX metadata_props and OpenVINO rt_info hold."""
    meta = {k: json.dumps(v) for k, v in preprocessing.items()}
    return meta | {"precision": precision, "producer": "edgekd"}


class ExportConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    formats: list[str] = ["onnx", "openvino"]
    opset: int = Field(17, ge=13)


def torch2onnx(model: nn.Module, dest: Path, meta: dict[str, str], cfg: ExportConfig) -> Path:
    import onnx

    example = torch.zeros(1, 3, *json.loads(meta["input_size"]))
    with atomic_path(dest) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the TorchScript exporter: NNCF's quantizers export as QuantizeLinear/DequantizeLinear there
        torch.onnx.export(
            model.eval(),
            example,
            str(tmp),
            dynamo=False,
            opset_version=cfg.opset,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
        proto = onnx.load(str(tmp))
        onnx.helper.set_model_props(proto, meta)
        onnx.save(proto, str(tmp))
    return dest


def onnx2openvino(onnx_path: Path, dest: Path, meta: dict[str, str], cfg: ExportConfig) -> Path:
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    for key, value in meta.items():
        model.set_rt_info(value, ["model_info", key])
    with atomic_path(dest) as tmp:
        tmp.mkdir()
        # keep fp32 weights: save_model compresses to fp16 by default
        ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)
    return dest / "model.xml"


def torch2pt2(model: nn.Module, dest: Path, meta: dict[str, str], cfg: ExportConfig) -> Path:
    """A `torch.export` program: runs with torch alone (no edgekd model code), on GPUs too."""
    example = torch.zeros(2, 3, *json.loads(meta["input_size"]))  # batch 2: 1 would be specialized
    program = torch.export.export(
        model.eval(), (example,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},)
    )
    buffer = io.BytesIO()  # torch.export.save wants a .pt2 name; the temporary one is not
    torch.export.save(program, buffer, extra_files={"edgekd.json": json.dumps(meta)})
    with atomic_path(dest) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return dest


@dataclass(frozen=True)
class Format:
    runtime: str
    suffix: str
    source: str  # "torch", or the format this one converts from
    convert: Callable[[object, Path, dict, ExportConfig], Path]
    precisions: tuple[str, ...] = ("fp32", "int8")


# in dependency order: a format's source comes before it
FORMATS: dict[str, Format] = {
    "onnx": Format("onnxruntime", ".onnx", "torch", torch2onnx),
    "openvino": Format("openvino", "_openvino", "onnx", onnx2openvino),
    # for GPUs (runtime torch-cuda); fp32 only: fp16 is a load-time choice, and GPU int8 goes through ONNX
    "torch": Format("torch", ".pt2", "torch", torch2pt2, precisions=("fp32",)),
}


def export(cfg: ExportConfig, models: dict[str, nn.Module], preprocessing: dict, out_dir: Path) -> list[Artifact]:
    """Exports each model (keyed by precision: fp32, int8) to every configured format."""
    unknown = [f for f in cfg.formats if f not in FORMATS]
    if unknown:
        raise EdgekdError(f"unknown export format {unknown}; choose from: {', '.join(FORMATS)}")
    wanted = set(cfg.formats)
    for name in reversed(list(FORMATS)):  # intermediate formats a wanted one converts from
        if name in wanted and FORMATS[name].source != "torch":
            wanted.add(FORMATS[name].source)
    artifacts = []
    for precision, model in models.items():
        meta = metadata(preprocessing, precision)
        made: dict[str, object] = {"torch": model}
        for name, fmt in FORMATS.items():
            if name not in wanted or precision not in fmt.precisions:
                continue
            path = fmt.convert(made[fmt.source], out_dir / f"student_{precision}{fmt.suffix}", meta, cfg)
            made[name] = path
            if name in cfg.formats:
                whole = path.parent if path.parent.name.endswith(fmt.suffix) else path
                artifacts.append(
                    Artifact(
                        name=f"{name}-{precision}",
                        format=name,
                        precision=precision,
                        runtime=fmt.runtime,
                        path=str(path),
                        size_mb=round(size_mb(whole), 3),
                        sha256=sha256(whole),
                    )
                )
    return artifacts
