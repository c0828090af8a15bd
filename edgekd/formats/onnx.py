"""ONNX for onnxruntime: fp32, and int8 laid out for onnxruntime's integer kernels (`edgekd.formats.qdq`)."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekd.errors import EdgekdError
from edgekd.formats.app_code import python_snippet
from edgekd.formats.base import Format, Int8Inputs, example_input, register
from edgekd.io import atomic_path

if TYPE_CHECKING:
    from torch import nn


def torch_to_onnx(model: nn.Module, meta: dict[str, str], opset: int):
    """The model as the TorchScript exporter writes it (NNCF's quantizers export there as
    QuantizeLinear/DequantizeLinear pairs), with quantized weights stored as int8."""
    import onnx
    import torch

    from edgekd.formats.qdq import fold_weight_quantizers

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            example_input(meta),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
    proto = onnx.load_from_string(buffer.getvalue())
    fold_weight_quantizers(proto)  # int8 weights in the file, not fp32 ones quantized at load
    return proto


def save_onnx(proto, dest: Path, meta: dict[str, str]) -> Path:
    import onnx

    onnx.helper.set_model_props(proto, meta)
    with atomic_path(dest) as tmp:
        onnx.save(proto, str(tmp))
    return dest


def torch2onnx(model: nn.Module, dest: Path, meta: dict[str, str], opset: int, int8: Int8Inputs | None = None):
    """ONNX for onnxruntime. An int8 model is laid out for onnxruntime's integer kernels, its
    QAT-trained weights kept (`edgekd.formats.qdq.for_onnxruntime`)."""
    from edgekd.formats.qdq import for_onnxruntime

    proto = torch_to_onnx(model, meta, opset)
    if meta["precision"] == "int8":
        if int8 is None:
            raise EdgekdError("exporting int8 to ONNX needs calibration images and the int8 scheme; pass int8=")
        batches = [np.asarray(image[None], np.float32) for image in int8.calibration]
        f = int8.flavour
        proto = for_onnxruntime(proto, batches, f.activations, f.per_channel, f.reduce_range)
    return save_onnx(proto, dest, meta)


def read_metadata(path: Path) -> dict[str, str]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)  # metadata only: the weights are not needed
    return {p.key: p.value for p in model.metadata_props}


SNIPPET = python_snippet(
    "onnxruntime",
    "onnxruntime",
    "import onnxruntime as ort",
    'session = ort.InferenceSession("{path}")\n'
    "embedded = session.get_modelmeta().custom_metadata_map\n"
    "meta = {{k: json.loads(embedded[k]) for k in {keys}}}\n"
    "input_name = session.get_inputs()[0].name",
    "session.run(None, {{input_name: x}})[0][0]",
    "Python that classifies an image with onnxruntime",
)

ONNX = register(
    Format(
        "onnx", "ONNX", "onnxruntime", ".onnx", ".onnx", torch2onnx,
        read_metadata=read_metadata, snippets=(SNIPPET,),
    )
)  # fmt: skip
