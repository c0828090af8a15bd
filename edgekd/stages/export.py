"""Export to ONNX and OpenVINO IR, fp32 and int8, with the metadata an app needs.

One table of formats drives export, verification and benchmarking: each format names the
runtime that runs it and the small function that converts the PyTorch model to it.
"""

from __future__ import annotations

import io
import json
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from edgekd.errors import EdgekdError
from edgekd.io import atomic_path, sha256, size_mb
from edgekd.qdq import fold_weight_quantizers, for_onnxruntime


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


def _onnx(model: nn.Module, meta: dict[str, str], cfg: ExportConfig):
    """The model as the TorchScript exporter writes it (NNCF's quantizers export there as
    QuantizeLinear/DequantizeLinear pairs), with quantized weights stored as int8."""
    import onnx

    example = torch.zeros(1, 3, *json.loads(meta["input_size"]))
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            example,
            buffer,
            dynamo=False,
            opset_version=cfg.opset,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
    proto = onnx.load_from_string(buffer.getvalue())
    fold_weight_quantizers(proto)  # int8 weights in the file, not fp32 ones quantized at load
    return proto


def _save_onnx(proto, dest: Path, meta: dict[str, str]) -> Path:
    import onnx

    onnx.helper.set_model_props(proto, meta)
    with atomic_path(dest) as tmp:
        onnx.save(proto, str(tmp))
    return dest


def torch2onnx(model: nn.Module, dest: Path, meta: dict[str, str], cfg: ExportConfig, calibration=None) -> Path:
    """ONNX for onnxruntime. An int8 model is laid out for onnxruntime's integer kernels, its
    QAT-trained weights kept (`edgekd.qdq.for_onnxruntime`; `calibration`: a few training images)."""
    proto = _onnx(model, meta, cfg)
    if meta["precision"] == "int8":
        if calibration is None:
            raise EdgekdError("exporting int8 to ONNX needs calibration images; pass calibration=")
        flavour = json.loads(meta["int8"])
        batches = [np.asarray(image[None], np.float32) for image in calibration]
        proto = for_onnxruntime(proto, batches, flavour["activations"], flavour["per_channel"], flavour["reduce_range"])
    return _save_onnx(proto, dest, meta)


def torch2openvino(model: nn.Module, dest: Path, meta: dict[str, str], cfg: ExportConfig, calibration=None) -> Path:
    """OpenVINO IR, through ONNX in the exporter's own layout: OpenVINO fuses NNCF's Q/DQ
    placement into int8 kernels as it is."""
    import openvino as ov

    with tempfile.TemporaryDirectory(prefix="edgekd-export-") as tmp:
        onnx_path = _save_onnx(_onnx(model, meta, cfg), Path(tmp) / "model.onnx", meta)
        converted = ov.convert_model(str(onnx_path))
    for key, value in meta.items():
        converted.set_rt_info(value, ["model_info", key])
    with atomic_path(dest) as tmp:
        tmp.mkdir()
        # keep fp32 weights: save_model compresses to fp16 by default
        ov.save_model(converted, str(tmp / "model.xml"), compress_to_fp16=False)
    return dest / "model.xml"


def torch2pt2(model: nn.Module, dest: Path, meta: dict[str, str], cfg: ExportConfig, calibration=None) -> Path:
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
    convert: Callable[..., Path]  # (model, dest, metadata, ExportConfig, calibration) -> path
    precisions: tuple[str, ...] = ("fp32", "int8")


FORMATS: dict[str, Format] = {
    "onnx": Format("onnxruntime", ".onnx", torch2onnx),
    "openvino": Format("openvino", "_openvino", torch2openvino),
    # for GPUs (runtime torch-cuda); fp32 only: fp16 is a load-time choice, and GPU int8 goes through ONNX
    "torch": Format("torch", ".pt2", torch2pt2, precisions=("fp32",)),
}


def export(
    cfg: ExportConfig,
    models: dict[str, nn.Module],
    preprocessing: dict,
    out_dir: Path,
    calibration: np.ndarray | None = None,
    int8: dict | None = None,
) -> list[Artifact]:
    """Exports each model (keyed by precision: fp32, int8) to every configured format.
    An int8 model needs `calibration` (a few normalized training images, NCHW) and its flavour
    `int8` (activations, per_channel, reduce_range: `Int8Flavour.model_dump()`)."""
    unknown = [f for f in cfg.formats if f not in FORMATS]
    if unknown:
        raise EdgekdError(f"unknown export format {unknown}; choose from: {', '.join(FORMATS)}")
    artifacts = []
    for precision, model in models.items():
        meta = metadata(preprocessing, precision) | ({"int8": json.dumps(int8)} if precision == "int8" else {})
        for name in cfg.formats:
            fmt = FORMATS[name]
            if precision not in fmt.precisions:
                continue
            path = fmt.convert(model, out_dir / f"student_{precision}{fmt.suffix}", meta, cfg, calibration)
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
