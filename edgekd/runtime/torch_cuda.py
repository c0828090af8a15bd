"""PyTorch on NVIDIA GPUs (and on the CPU, to verify the artifact): a `torch.export` program
(.pt2) run in fp32 or fp16, eagerly or replayed as a CUDA graph, which removes the per-kernel
launch cost that dominates small models at batch 1."""

from __future__ import annotations

import numpy as np

from edgekd.runtime.base import Session, register


def _torch_version() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.__version__


class TorchSession(Session):
    runtime = "torch"
    package = "torch"
    emulated = False
    default_on = ()  # on CPU targets artifacts run in their mobile formats; GPUs name it
    device = "cpu"

    def __init__(self, path: str, threads: int, precision: str = "fp32", graphs: bool = False):
        import torch

        torch.set_num_threads(threads)
        self.torch = torch
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        program = torch.export.load(path)
        self.shape = [1] + [int(d) for d in program.example_inputs[0][0].shape[1:]]
        self.module = program.module().to(self.device, self.dtype).to(memory_format=torch.channels_last)
        self.graphs = graphs
        self.graph = None

    def _capture(self, shape: tuple) -> None:
        torch = self.torch
        self.static_in = torch.zeros(shape, device=self.device, dtype=self.dtype).to(memory_format=torch.channels_last)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.no_grad():  # warm-up outside the graph, as capture requires
            for _ in range(3):
                self.module(self.static_in)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.no_grad():
            self.static_out = self.module(self.static_in)

    def run(self, batch: np.ndarray) -> np.ndarray:
        torch = self.torch
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        if self.graphs:
            if self.graph is None or tuple(self.static_in.shape) != x.shape:
                self._capture(tuple(x.shape))
            self.static_in.copy_(x)
            self.graph.replay()
            return self.static_out.float().cpu().numpy()
        with torch.no_grad():
            x = x.to(self.device, self.dtype).contiguous(memory_format=torch.channels_last)
            return self.module(x).float().cpu().numpy()

    def input_shape(self) -> list[int]:
        return list(self.shape)


class TorchCudaSession(TorchSession):
    runtime = "torch-cuda"
    device = "cuda"
    gpu_runs = "torch"
    gpu_variants = tuple({"precision": p, "graphs": g} for g in (False, True) for p in ("fp32", "fp16"))
    not_installed = "PyTorch is not installed"

    @classmethod
    def variant_name(cls, options: dict) -> str:
        return f"torch-cuda {options['precision']} {'CUDA graph' if options['graphs'] else 'eager'}"


register("torch", _torch_version)(TorchSession)
register("torch-cuda", _torch_version)(TorchCudaSession)
