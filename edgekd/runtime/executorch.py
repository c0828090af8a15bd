"""ExecuTorch's Python runtime, running a .pte program (its graph delegated to XNNPACK). Its C++
logs CPU probing and thread-pool resets to stderr while it loads: silenced."""

from __future__ import annotations

import json
from importlib import metadata

import numpy as np

from edgekd.runtime.base import Session, native_output_silenced, register


def _version() -> str | None:
    try:
        with native_output_silenced(2):
            import executorch.runtime  # noqa: F401  (installed is not enough: it must load)
        return metadata.version("executorch")
    except (ImportError, metadata.PackageNotFoundError):
        return None


class ExecutorchSession(Session):
    runtime = "executorch"
    package = "executorch"
    arm_release = "1.0.1"  # see edgekd.emulation.EXECUTORCH_STACK

    def __init__(self, path: str, threads: int):
        import torch

        with native_output_silenced(2):
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
