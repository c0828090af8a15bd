"""GPU rows of a `cuda` target: onnxruntime-gpu's CUDA and TensorRT providers on the ONNX
artifacts, and PyTorch on CUDA (fp32 and fp16, eager and CUDA graphs) on the `torch.export`
artifact, each at batch 1 (latency) and at a throughput batch. Without a GPU, or without
onnxruntime-gpu, the rows are "not run" with the reason, never numbers."""

from __future__ import annotations

from edgekd.errors import EdgekdError
from edgekd.formats import Artifact
from edgekd.runtime import runtime_version
from edgekd.targets import Target

# runtime -> the artifact format it runs, and its variants (session options)
PLANS: dict[str, tuple[str, list[dict]]] = {
    "onnxruntime-cuda": ("onnx", [{}]),
    "tensorrt": ("onnx", [{}]),
    "torch-cuda": (
        "torch",
        [
            {"precision": "fp32", "graphs": False},
            {"precision": "fp16", "graphs": False},
            {"precision": "fp32", "graphs": True},
            {"precision": "fp16", "graphs": True},
        ],
    ),
}


def cuda_device() -> str | None:
    """The first CUDA device's name, or None."""
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def _why_not(runtime: str, gpu: str | None) -> str | None:
    if runtime in ("onnxruntime-cuda", "tensorrt") and runtime_version(runtime) is None:
        provider = "CUDA" if runtime == "onnxruntime-cuda" else "TensorRT"
        return f"onnxruntime-gpu is not installed (this onnxruntime has no {provider} execution provider)"
    if runtime == "torch-cuda" and runtime_version(runtime) is None:
        return "PyTorch is not installed"
    return None if gpu else "no CUDA device on this host"


def _variant(runtime: str, options: dict) -> str:
    if runtime != "torch-cuda":
        return runtime
    return f"torch-cuda {options['precision']} {'CUDA graph' if options['graphs'] else 'eager'}"


def bench_gpu(artifacts: list[Artifact], target: Target, throughput_batch: int, measure) -> list[dict]:
    """`measure(artifact, runtime, batch, options)` runs one measurement in a fresh process."""
    gpu = cuda_device()
    rows = []
    unknown = [r for r in target.runtimes if r not in PLANS]
    if unknown:
        raise EdgekdError(f"target '{target.name}': unknown GPU runtime {unknown}; choose from: {', '.join(PLANS)}")
    for runtime in target.runtimes:
        source, variants = PLANS[runtime]
        for artifact in (a for a in artifacts if a.format == source):
            reason = _why_not(runtime, gpu)
            if reason:
                rows.append({"artifact": artifact.name, "runtime": runtime, "status": "not run", "reason": reason})
                continue
            for options in variants:
                for batch in (1, throughput_batch):
                    row = {"artifact": artifact.name} | measure(artifact, runtime, batch, options)
                    row |= {"runtime": runtime, "variant": _variant(runtime, options), "device": gpu, "batch": batch}
                    if options.get("precision") == "fp16":  # the fp32 artifact run in half precision:
                        row |= {"precision": "fp16", "accuracy": None, "agreement": None}  # not verified
                    rows.append(row)
    return rows
