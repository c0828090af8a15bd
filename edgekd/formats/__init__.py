"""Export formats, one module each (`onnx.py`, `openvino.py`, `torch.py`, `executorch.py`,
`tflite.py`, `ncnn.py`): each registers a `Format` in `FORMATS` with its converter, runtime,
pip extra, metadata reader, app snippets, emulation and QAT backend. Adding one is one such
module, imported here or loaded as a plugin (`edgekd.runtime.base.load_plugins`)."""

import importlib

from edgekd.formats.artifact import (
    Artifact,
    artifact_of,
    artifact_root,
    format_of,
    read_preprocessing,
    student_key,
)
from edgekd.formats.base import FORMATS, AppSnippet, Format, Int8Inputs, Preprocessing, app_snippets, metadata
from edgekd.runtime.base import load_plugins

# registered in this order: the order the CLI, errors and reports list them in
for _module in ("onnx", "openvino", "torch", "executorch", "tflite", "ncnn"):
    importlib.import_module(f"edgekd.formats.{_module}")
load_plugins()

__all__ = [
    "FORMATS", "AppSnippet", "Artifact", "Format", "Int8Inputs", "Preprocessing", "app_snippets", "artifact_of",
    "artifact_root", "format_of", "metadata", "read_preprocessing", "student_key",
]  # fmt: skip
