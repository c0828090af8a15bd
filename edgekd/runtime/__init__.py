"""Runtimes that run exported artifacts. Adding one: a file with a `Session` under `register`."""

from edgekd.runtime import executorch, litert, ncnn, ort, ort_gpu, ov, torch_cuda  # noqa: F401  (registers the runtimes)
from edgekd.runtime.base import RUNTIMES, Session, open_session, runtime_version

__all__ = ["RUNTIMES", "Session", "open_session", "runtime_version"]
