"""The machine and library versions a report was measured with."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

PACKAGES = ["edgekd", "torch", "torchvision", "onnx", "onnxruntime", "openvino", "nncf", "numpy"]
INT8_FLAGS = ["avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm"]


def _cpu() -> tuple[str, set[str]]:
    cpuinfo = Path("/proc/cpuinfo")
    model, flags = platform.processor() or platform.machine(), set()
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model") and model in ("", platform.machine()):
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    return model, flags


def cpu_name() -> str:
    """The CPU in words, with the int8 instructions that decide its kernels' arithmetic."""
    model, flags = _cpu()
    if platform.machine() != "x86_64":
        return model
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{model}: {vector}, {'VNNI' if flags & {'avx512_vnni', 'avx_vnni'} else 'no VNNI'}"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict:
    model, flags = _cpu()
    return {
        "machine": platform.machine(),
        "cpu": model,
        "cores": os.cpu_count(),
        "int8_flags": {flag: flag in flags for flag in INT8_FLAGS},
        "python": platform.python_version(),
        "os": platform.platform(),
        "packages": {p: _version(p) for p in PACKAGES},
    }
