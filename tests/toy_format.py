"""A format and its runtime from outside edgekd, in this one module, loaded as a plugin
($EDGEKD_PLUGINS=tests.toy_format): ONNX bytes under a `.toy` suffix, run by a `toy-ort` session
that is onnxruntime under another name. `test_format_plugin.py` builds with it."""

from __future__ import annotations

from edgekd.formats.base import Format, register
from edgekd.formats.onnx import read_metadata, torch2onnx
from edgekd.runtime.base import register as register_runtime
from edgekd.runtime.ort import OrtSession, _version


class ToySession(OrtSession):
    runtime = "toy-ort"
    emulated = False  # no aarch64 wheel of its own to run under qemu


register_runtime("toy-ort", _version)(ToySession)
TOY = register(
    Format(
        "toy",
        "Toy (ONNX bytes)",
        "toy-ort",
        ".toy",
        ".toy",
        torch2onnx,
        precisions=("fp32",),
        read_metadata=read_metadata,
    )  # fmt: skip
)
