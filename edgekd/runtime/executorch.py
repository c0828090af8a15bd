"""ExecuTorch's Python runtime, running a .pte program (its graph delegated to XNNPACK)."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from importlib import metadata

import numpy as np

from edgekd.runtime.base import Session, register


@contextmanager
def _native_logs_silenced():
    """ExecuTorch's C++ logs its CPU probing and thread-pool resets to stderr, which carries
    edgekd's own progress and errors: they go to /dev/null while it loads."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _version() -> str | None:
    try:
        with _native_logs_silenced():
            import executorch.runtime  # noqa: F401  (installed is not enough: it must load)
        return metadata.version("executorch")
    except (ImportError, metadata.PackageNotFoundError):
        return None


class ExecutorchSession(Session):
    runtime = "executorch"

    def __init__(self, path: str, threads: int):
        import torch

        with _native_logs_silenced():
            from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
            from executorch.runtime import Runtime

            _unsafe_reset_threadpool(threads)  # XNNPACK's thread pool, shared by the process
            self.program = Runtime.get().load_program(path)
            self.method = self.program.load_method("forward")
        self._torch = torch
        self.shape = list(self.method.metadata.input_tensor_meta(0).sizes())

    def run(self, batch: np.ndarray) -> np.ndarray:
        # the program is exported at batch 1, as apps run it
        images = self._torch.from_numpy(np.ascontiguousarray(batch, np.float32))
        return np.concatenate([self.method.execute([image[None]])[0].numpy() for image in images])

    def input_shape(self) -> list[int]:
        return [1] + self.shape[1:]

    def metadata(self) -> dict:
        return json.loads(self.program.load_method("edgekd_metadata").execute([])[0])


register("executorch", _version)(ExecutorchSession)
