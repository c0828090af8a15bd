"""GPU rows of a `cuda` target: each GPU runtime (a session with `gpu_runs`: onnxruntime-gpu's
CUDA and TensorRT providers on the ONNX artifacts, PyTorch on CUDA in fp32 and fp16, eager and
CUDA graphs, on the `torch.export` artifact) in each of its variants, at batch 1 (latency) and
at a throughput batch. Without a GPU, or without the runtime, the rows are "not run" with the
reason, never numbers."""

from __future__ import annotations

from edgekd.errors import EdgekdError
from edgekd.formats import Artifact
from edgekd.runtime import RUNTIMES, Session, runtime_version, session_class
from edgekd.targets import Target


def cuda_device() -> str | None:
    """The first CUDA device's name, or None."""
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def _why_not(runtime: type[Session], gpu: str | None) -> str | None:
    if runtime_version(runtime.runtime) is None:
        return runtime.not_installed
    return None if gpu else "no CUDA device on this host"


def bench_gpu(artifacts: list[Artifact], target: Target, throughput_batch: int, measure) -> list[dict]:
    """`measure(artifact, runtime, batch, options)` runs one measurement in a fresh process."""
    gpu = cuda_device()
    rows = []
    known = [name for name in RUNTIMES if session_class(name).gpu_runs]
    unknown = [r for r in target.runtimes if r not in known]
    if unknown:
        raise EdgekdError(f"target '{target.name}': unknown GPU runtime {unknown}; choose from: {', '.join(known)}")
    for runtime in map(session_class, target.runtimes):
        for artifact in (a for a in artifacts if a.format == runtime.gpu_runs):
            reason = _why_not(runtime, gpu)
            if reason:
                rows.append(
                    {"artifact": artifact.name, "runtime": runtime.runtime, "status": "not run", "reason": reason}
                )
                continue
            for options in runtime.gpu_variants:
                for batch in (1, throughput_batch):
                    row = {"artifact": artifact.name} | measure(artifact, runtime.runtime, batch, options)
                    row |= {"runtime": runtime.runtime, "variant": runtime.variant_name(options)}
                    row |= {"device": gpu, "batch": batch}
                    if options.get("precision") == "fp16":  # the fp32 artifact run in half precision:
                        row |= {"precision": "fp16", "accuracy": None, "agreement": None}  # not verified
                    rows.append(row)
    return rows
