"""Export to ONNX, OpenVINO IR, ExecuTorch, LiteRT and ncnn, with the metadata an app needs.

`edgekd.formats.FORMATS` says what each format is; here each has one small converter,
`torch2<format>`, in `CONVERTERS`.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from edgekd.errors import EdgekdError
from edgekd.formats import FORMATS, Artifact, artifact_of, int8_key, model_key
from edgekd.formats.qdq import fold_weight_quantizers, for_onnxruntime
from edgekd.io import atomic_path
from edgekd.quantizers import QUANTIZERS
from edgekd.quantizers.xnnpack import with_int8_weights
from edgekd.runtime.base import native_output_silenced
from edgekd.runtime.litert import METADATA_NAME
from edgekd.runtime.ncnn import METADATA_FILE as NCNN_METADATA
from edgekd.targets import Int8Flavour
from edgekd.training.checkpoints import QatCheckpoint
from edgekd.training.loop import load_checkpoint


def metadata(preprocessing: dict, precision: str) -> dict[str, str]:
    """Flat string key/values: the form both ONNX metadata_props and OpenVINO rt_info hold."""
    meta = {k: json.dumps(v) for k, v in preprocessing.items()}
    return meta | {"precision": precision, "producer": "edgekd"}


def example_input(meta: dict[str, str], batch: int = 1) -> torch.Tensor:
    """A zero batch at the model's input size, which the exporters trace with."""
    return torch.zeros(batch, 3, *json.loads(meta["input_size"]))


class ExportConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    formats: list[str] = ["onnx", "openvino"]
    opset: int = Field(17, ge=13)


def _onnx(model: nn.Module, meta: dict[str, str], cfg: ExportConfig):
    """The model as the TorchScript exporter writes it (NNCF's quantizers export there as
    QuantizeLinear/DequantizeLinear pairs), with quantized weights stored as int8."""
    import onnx

    example = example_input(meta)
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


@dataclass(frozen=True)
class Int8Inputs:
    """What an int8 export needs beside the model."""

    calibration: np.ndarray  # a few normalized training images, NCHW
    flavour: Int8Flavour  # the target's int8 scheme, which the model was trained for

    @staticmethod
    def choose(current: Int8Inputs | None, qat: QatCheckpoint) -> Int8Inputs:
        """From NNCF's QAT where there is one (the ONNX export re-lays its Q/DQ out with its
        images), else from the first: every int8 artifact's metadata names its scheme."""
        if current is None or qat.quantizer == "nncf":
            return Int8Inputs(qat.calibration_array(), qat.int8)
        return current


def torch2onnx(model: nn.Module, dest: Path, meta: dict[str, str], cfg: ExportConfig, int8: Int8Inputs | None = None):
    """ONNX for onnxruntime. An int8 model is laid out for onnxruntime's integer kernels, its
    QAT-trained weights kept (`edgekd.formats.qdq.for_onnxruntime`)."""
    proto = _onnx(model, meta, cfg)
    if meta["precision"] == "int8":
        if int8 is None:
            raise EdgekdError("exporting int8 to ONNX needs calibration images and the int8 scheme; pass int8=")
        batches = [np.asarray(image[None], np.float32) for image in int8.calibration]
        f = int8.flavour
        proto = for_onnxruntime(proto, batches, f.activations, f.per_channel, f.reduce_range)
    return _save_onnx(proto, dest, meta)


def torch2openvino(model: nn.Module, dest: Path, meta: dict[str, str], cfg: ExportConfig, int8=None) -> Path:
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


def torch2pt2(model: nn.Module, dest: Path, meta: dict[str, str], cfg: ExportConfig, int8=None) -> Path:
    """A `torch.export` program: runs with torch alone (no edgekd model code), on GPUs too."""
    example = example_input(meta, batch=2)  # batch 2: 1 would be specialized
    program = torch.export.export(
        model.eval(), (example,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},)
    )
    buffer = io.BytesIO()  # torch.export.save wants a .pt2 name; the temporary one is not
    torch.export.save(program, buffer, extra_files={"edgekd.json": json.dumps(meta)})
    with atomic_path(dest) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return dest


def torch2executorch(model: nn.Module, dest: Path, meta: dict[str, str], cfg: ExportConfig, int8=None) -> Path:
    """An ExecuTorch program with its graph delegated to XNNPACK, batch 1 as apps run it. The
    metadata is a constant method, `edgekd_metadata`, returning the JSON of ONNX's key/values."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    example = example_input(meta)
    model.eval()  # not inline: an exported graph's eval (torchao's) returns None
    if meta["precision"] == "int8":
        model = with_int8_weights(model)
    program = torch.export.export(model, (example,))
    lowered = to_edge_transform_and_lower(
        program, partitioner=[XnnpackPartitioner()], constant_methods={"edgekd_metadata": json.dumps(meta)}
    ).to_executorch()
    with atomic_path(dest) as tmp:
        tmp.write_bytes(lowered.buffer)
    return dest


def torch2tflite(model: nn.Module, dest: Path, meta: dict[str, str], cfg: ExportConfig, int8=None) -> Path:
    """A LiteRT flatbuffer through litert-torch, batch 1, NCHW input as the other formats take it.
    The int8 model (PT2E, XNNPACK's scheme) becomes a fully int8 graph: int8 input and output,
    their scale and zero point in the tensors' quantization. The metadata is the model's
    `edgekd_metadata` entry, the JSON of ONNX's key/values."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    with native_output_silenced(1, 2):
        import litert_torch

        litert_torch.config.show_progress = False  # its rich progress would interleave with edgekd's
        # litert-torch brings JAX, which warns at every later fork; the forks that follow (the
        # data loader's workers) only decode images and never touch JAX
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
        quant_config = None
        if meta["precision"] == "int8":
            from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
            from litert_torch.quantize.quant_config import QuantConfig

            # the graph is already quantized; the quantizer only tells the converter it is static int8
            scheme = get_symmetric_quantization_config(is_per_channel=True)
            quant_config = QuantConfig(pt2e_quantizer=PT2EQuantizer().set_global(scheme))
        example = example_input(meta)
        model.eval()  # not inline: an exported graph's eval (torchao's) returns None
        converted = litert_torch.convert(model, (example,), quant_config=quant_config)
        flatbuffer = flatbuffer_utils.read_model_from_bytearray(bytearray(converted.model_content()))
    flatbuffer.buffers.append(schema.BufferT())
    flatbuffer.buffers[-1].data = list(json.dumps(meta).encode())
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(flatbuffer.buffers) - 1
    flatbuffer.metadata = [*(flatbuffer.metadata or []), entry]
    with atomic_path(dest) as tmp:
        tmp.write_bytes(flatbuffer_utils.convert_object_to_bytearray(flatbuffer))
    return dest


def torch2ncnn(model: nn.Module, dest: Path, meta: dict[str, str], cfg: ExportConfig, int8=None) -> Path:
    """ncnn's param and bin through pnnx (which traces with TorchScript), batch 1, weights in fp32
    (pnnx's default stores them in fp16). The int8 model (PT2E, XNNPACK's scheme) is converted
    without its quantize/dequantize pairs and its convolutions then take the QAT's int8 weights
    and scales (`edgekd.formats.ncnn_int8`). ncnn's files hold no key/values: the metadata is
    `metadata.json` beside them."""
    import pnnx

    from edgekd.formats import ncnn_int8

    scales = ncnn_int8.layer_scales(model) if meta["precision"] == "int8" else None
    traced = ncnn_int8.float_graph(model) if scales is not None else model.eval()
    with tempfile.TemporaryDirectory(prefix="edgekd-pnnx-") as tmp, native_output_silenced(1, 2):
        # pnnx writes its intermediate files beside the traced model, and prints its passes
        pnnx.export(traced, str(Path(tmp) / "model.pt"), (example_input(meta),), fp16=False)
        param, weights = Path(tmp) / "model.ncnn.param", Path(tmp) / "model.ncnn.bin"
        if scales is not None:
            text, data, found, total = ncnn_int8.rewrite(param, weights, scales)
            if found == 0:
                raise EdgekdError(f"ncnn int8: none of the {total} convolutions pnnx wrote is one the QAT quantized")
            param.write_text(text)
            weights.write_bytes(data)
        with atomic_path(dest) as folder:
            folder.mkdir()
            for path in (param, weights):
                shutil.move(path, folder / path.name)
            (folder / NCNN_METADATA).write_text(json.dumps(meta, indent=1))
    return dest / "model.ncnn.param"


# each format's converter, by its name in `edgekd.formats.FORMATS`
CONVERTERS: dict[str, Callable[..., Path]] = {  # (model, dest, metadata, ExportConfig, Int8Inputs) -> path
    "onnx": torch2onnx,
    "openvino": torch2openvino,
    "torch": torch2pt2,
    "executorch": torch2executorch,
    "tflite": torch2tflite,
    "ncnn": torch2ncnn,
}
assert CONVERTERS.keys() == FORMATS.keys(), "a format without a converter, or a converter without a format"


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
            path = CONVERTERS[name](model, out_dir / f"student_{precision}{fmt.suffix}", meta, cfg, int8)
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
