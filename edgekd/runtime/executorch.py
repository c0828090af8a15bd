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
    # ExecuTorch's Python runtime links libtorch, and PyPI's aarch64 torch 2.14 is a CUDA build that
    # cannot load without CUDA's libraries (gigabytes). torch 2.9.1's aarch64 wheel on PyPI is a CPU
    # build, and executorch 1.0.1 was built against it; its runtime loads the programs 1.5 writes.
    # They go in a site of their own (half a gigabyte), fetched only when an ExecuTorch artifact runs
    # under emulation, with the few pure-Python packages `import executorch.runtime` needs (pip
    # cannot resolve torch's dependencies for another platform: its markers name x86_64's CUDA
    # wheels). Pinned to the releases checked together.
    arm_release = "1.0.1"
    arm_site = (
        "torch==2.9.1", "typing_extensions==4.16.0", "sympy==1.14.0", "mpmath==1.4.1", "filelock==4.3.2",
        "fsspec==2026.9.0", "networkx==3.6.1", "jinja2==3.1.6", "markupsafe==3.0.4", "ruamel.yaml==0.19.1",
        "pyyaml==6.0.4", "tabulate==0.10.0",
    )  # fmt: skip

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
