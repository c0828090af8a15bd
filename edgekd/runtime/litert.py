"""LiteRT (TensorFlow Lite) through ai-edge-litert's interpreter, its XNNPACK delegate on."""

from __future__ import annotations

import json
from importlib import metadata

import numpy as np

from edgekd.runtime.base import Session, native_output_silenced, register, summarize_convs

METADATA_NAME = "edgekd_metadata"  # the name of the model's metadata entry that holds edgekd's key/values
CONVS = ("CONV_2D", "DEPTHWISE_CONV_2D")


def _version() -> str | None:
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return None
    return metadata.version("ai-edge-litert")


def read_metadata(model: bytes) -> dict[str, str]:
    """edgekd's key/values from a .tflite flatbuffer's metadata entry (what apps read with
    the flatbuffer schema; the interpreter does not expose it)."""
    from ai_edge_litert import schema_py_generated as schema

    root = schema.Model.GetRootAs(model, 0)
    for i in range(root.MetadataLength()):
        entry = root.Metadata(i)
        if entry.Name().decode() == METADATA_NAME:
            return json.loads(root.Buffers(entry.Buffer()).DataAsNumpy().tobytes())
    return {}


def quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    """A float tensor in the int8 input's own scale and zero point (fully int8 models take int8)."""
    if detail["dtype"] == np.float32:
        return x.astype(np.float32)
    scale, zero = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(detail["dtype"])


def dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return y
    scale, zero = detail["quantization"]
    return (y.astype(np.float32) - zero) * scale


class LitertSession(Session):
    runtime = "litert"
    package = "ai-edge-litert"
    arm_release = "1.4.0"  # ai-edge-litert 2.x has no aarch64 Linux wheel; 1.4.0 is the newest that has

    def __init__(self, path: str, threads: int):
        from ai_edge_litert.interpreter import Interpreter

        self.path = path
        with native_output_silenced(2):  # LiteRT logs each XNNPACK delegate it creates on stderr
            self.interpreter = Interpreter(model_path=path, num_threads=threads)
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def run(self, batch: np.ndarray) -> np.ndarray:
        # converted at batch 1, as apps run it
        outputs = []
        for image in np.asarray(batch, np.float32):
            self.interpreter.set_tensor(self.input["index"], quantize(image[None], self.input))
            self.interpreter.invoke()
            outputs.append(dequantize(self.interpreter.get_tensor(self.output["index"]), self.output))
        return np.concatenate(outputs)

    def input_shape(self) -> list[int]:
        return [int(d) for d in self.input["shape"]]

    def executed_precision(self) -> dict:
        tensors = {t["index"]: t for t in self.interpreter.get_tensor_details()}
        kinds = [
            "int8" if tensors[op["inputs"][0]]["dtype"] == np.int8 else "fp32"
            for op in self.interpreter._get_ops_details()  # the only listing of the graph's operators
            if op["op_name"] in CONVS
        ]
        return summarize_convs(kinds)

    def metadata(self) -> dict[str, str]:
        with open(self.path, "rb") as f:
            return read_metadata(f.read())


register("litert", _version)(LitertSession)
