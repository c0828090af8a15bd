"""onnxruntime on NVIDIA GPUs: the CUDA and TensorRT execution providers of onnxruntime-gpu."""

from __future__ import annotations

from edgekd.runtime.base import register
from edgekd.runtime.ort import OrtSession


def _with_provider(provider: str):
    def version() -> str | None:
        """The version when onnxruntime has this provider: only onnxruntime-gpu builds do."""
        try:
            import onnxruntime
        except ImportError:
            return None
        return onnxruntime.__version__ if provider in onnxruntime.get_available_providers() else None

    return version


class OrtCudaSession(OrtSession):
    runtime = "onnxruntime-cuda"
    default_on = ()
    package = "onnxruntime-gpu"
    emulated = False
    gpu_runs = "onnx"
    not_installed = "onnxruntime-gpu is not installed (this onnxruntime has no CUDA execution provider)"
    providers = ["CUDAExecutionProvider"]
    # GPU providers compile nodes that onnxruntime cannot write back out as a graph
    inspect_graph = False


class OrtTensorrtSession(OrtCudaSession):
    runtime = "tensorrt"
    not_installed = "onnxruntime-gpu is not installed (this onnxruntime has no TensorRT execution provider)"
    # nodes TensorRT does not take fall back to CUDA
    providers = ["TensorrtExecutionProvider", "CUDAExecutionProvider"]


register("onnxruntime-cuda", _with_provider("CUDAExecutionProvider"))(OrtCudaSession)
register("tensorrt", _with_provider("TensorrtExecutionProvider"))(OrtTensorrtSession)
