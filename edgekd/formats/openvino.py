"""OpenVINO IR (a folder: model.xml + model.bin), converted from the exporter's ONNX as it is:
OpenVINO fuses NNCF's Q/DQ placement into int8 kernels itself."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from edgekd.formats.app_code import python_snippet
from edgekd.formats.base import METADATA_KEYS, Format, register
from edgekd.formats.onnx import save_onnx, torch_to_onnx
from edgekd.io import atomic_path

if TYPE_CHECKING:
    from torch import nn


def torch2openvino(model: nn.Module, dest: Path, meta: dict[str, str], opset: int, int8=None) -> Path:
    import openvino as ov

    with tempfile.TemporaryDirectory(prefix="edgekd-export-") as tmp:
        onnx_path = save_onnx(torch_to_onnx(model, meta, opset), Path(tmp) / "model.onnx", meta)
        converted = ov.convert_model(str(onnx_path))
    for key, value in meta.items():
        converted.set_rt_info(value, ["model_info", key])
    with atomic_path(dest) as tmp:
        tmp.mkdir()
        # keep fp32 weights: save_model compresses to fp16 by default
        ov.save_model(converted, str(tmp / "model.xml"), compress_to_fp16=False)
    return dest / "model.xml"


def read_metadata(path: Path) -> dict[str, str]:
    import openvino as ov

    model = ov.Core().read_model(str(path))
    present = [k for k in METADATA_KEYS if model.has_rt_info(["model_info", k])]
    return {k: model.get_rt_info(["model_info", k]).astype(str) for k in present}


SNIPPET = python_snippet(
    "openvino",
    "openvino",
    "import openvino as ov",
    "core = ov.Core()\n"
    'model = core.read_model("{path}")\n'
    'meta = {{k: json.loads(model.get_rt_info(["model_info", k]).astype(str)) for k in {keys}}}\n'
    'compiled = core.compile_model(model, "CPU")',
    "compiled(x)[0][0]",
    "the same with OpenVINO",
)

OPENVINO = register(
    Format(
        "openvino", "OpenVINO IR", "openvino", "_openvino", "model.xml", torch2openvino, folder=True,
        read_metadata=read_metadata, snippets=(SNIPPET,),
    )
)  # fmt: skip
