"""LiteRT (.tflite) for Android, through litert-torch, batch 1, NCHW input as the other formats
take it. Its int8 is the same PT2E QAT as ExecuTorch's (LiteRT's kernels are XNNPACK's too) and
becomes a fully int8 graph: int8 input and output, their scale and zero point in the tensors'
quantization. The metadata is the model's `edgekd_metadata` entry, the JSON of ONNX's key/values."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from edgekd.formats.app_code import python_snippet
from edgekd.formats.base import AppSnippet, Format, example_input, register
from edgekd.formats.litert_android import kotlin_litert
from edgekd.io import atomic_path

if TYPE_CHECKING:
    from torch import nn
from edgekd.runtime.base import native_output_silenced
from edgekd.runtime.litert import METADATA_NAME


def torch2tflite(model: nn.Module, dest: Path, meta: dict[str, str], opset: int, int8=None) -> Path:
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


SNIPPET = python_snippet(
    "litert",
    "ai-edge-litert",
    "from ai_edge_litert import schema_py_generated as schema\nfrom ai_edge_litert.interpreter import Interpreter",
    'model_bytes = open("{path}", "rb").read()\n'
    "root = schema.Model.GetRootAs(model_bytes, 0)\n"
    "entries = [root.Metadata(i) for i in range(root.MetadataLength())]\n"
    'entry = next(e for e in entries if e.Name() == b"edgekd_metadata")\n'
    "embedded = json.loads(root.Buffers(entry.Buffer()).DataAsNumpy().tobytes())\n"
    "meta = {{k: json.loads(embedded[k]) for k in {keys}}}\n"
    "interpreter = Interpreter(model_content=model_bytes)\n"
    "interpreter.allocate_tensors()\n"
    "(input_,), (output,) = interpreter.get_input_details(), interpreter.get_output_details()\n"
    "\n\n"
    "def run(x: np.ndarray) -> np.ndarray:\n"
    '    if input_["dtype"] == np.int8:  # a fully int8 model takes and gives int8, in each tensor\'s scale\n'
    '        scale, zero = input_["quantization"]\n'
    "        x = np.clip(np.round(x / scale) + zero, -128, 127).astype(np.int8)\n"
    '    interpreter.set_tensor(input_["index"], x)\n'
    "    interpreter.invoke()\n"
    '    y = interpreter.get_tensor(output["index"])\n'
    '    if output["dtype"] == np.int8:\n'
    '        scale, zero = output["quantization"]\n'
    "        y = (y.astype(np.float32) - zero) * scale\n"
    "    return y",
    "run(x)[0]",
    "the same with LiteRT's interpreter (ai-edge-litert)",
)
KOTLIN = AppSnippet(
    "kotlin_litert",
    "Kotlin on Android with LiteRT",
    "kotlin",
    "Kotlin for an Android app with LiteRT's Interpreter (written, not compiled, by edgekd)",
    lambda pre, path: kotlin_litert(pre, Path(path).name),
)

TFLITE = register(
    Format(
        "tflite", "LiteRT (.tflite)", "litert", ".tflite", ".tflite", torch2tflite,
        quantizer="xnnpack", extra="tflite", snippets=(SNIPPET, KOTLIN),
    )
)  # fmt: skip
