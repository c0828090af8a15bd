"""Multi-process training under torchrun (`torchrun --nproc_per_node N -m edgekd build ...`).

Every process runs the same command. Each trains on its own 1/N of the training images (a
DistributedSampler per shuffled loader) and DistributedDataParallel averages the gradients, so
all processes hold the same weights after every step. Rank 0 writes every file and every log
line; the others skip the writes and wait at a barrier where they read what rank 0 wrote next.
Without torchrun (WORLD_SIZE unset or 1) every helper here is a no-op.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, DistributedSampler

from edgekd.io import save_torch


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


@contextmanager
def launched(device: torch.device) -> Iterator[None]:
    """Joins the process group torchrun started (nccl on CUDA, gloo on the CPU) for the length of
    a command; nested or outside torchrun, nothing happens."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. computes and writes a cache); the others run it after,
    and find what it wrote."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def save(obj: Any, path: Path) -> None:
    """Rank 0 writes `obj` to `path`; every rank returns once it is on disk."""
    if is_main():
        save_torch(obj, path)
    barrier()


def sampler(dataset: Dataset, seed: int) -> DistributedSampler | None:
    """This process's shard of a training set (reshuffled per epoch by `fit`), or None alone."""
    return DistributedSampler(dataset, shuffle=True, seed=seed) if world_size() > 1 else None


class Trained(nn.Module):
    """The model and the loss's own parameters (e.g. FitNet adapters) as one module, so that
    DDP averages the gradients of both; calling it calls the model."""

    def __init__(self, model: nn.Module, extra: nn.Module | None):
        super().__init__()
        self.model, self.extra = model, extra

    def forward(self, *args: Any) -> Any:
        return self.model(*args)


def wrap(model: nn.Module, extra: nn.Module | None) -> nn.Module:
    """`model` itself alone; under torchrun, DDP over the model and `extra` (which starts every
    rank from rank 0's weights). The loss runs `extra` outside DDP's forward: its gradients are
    still averaged, as long as unused parameters are not searched for (the default)."""
    if world_size() == 1:
        return model
    device = next(model.parameters()).device
    return DistributedDataParallel(Trained(model, extra), device_ids=[device] if device.type == "cuda" else None)


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over a state_dict's names and tensor bytes, whatever the device or memory format."""
    digest = hashlib.sha256()
    for name, tensor in state.items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def check_in_step(model: nn.Module, extra: nn.Module | None, images: int, total: int) -> str:
    """After training: copies rank 0's buffers (BatchNorm statistics, which each rank updates
    from its own shard) to every rank, then checks that all ranks hold the same weights: a
    parameter outside DDP would have drifted. Returns the line to log."""
    for module in [m for m in (model, extra) if m is not None]:
        for buffer in module.buffers():
            dist.broadcast(buffer, 0)
    mine = (images, state_digest(model.state_dict()), state_digest(extra.state_dict() if extra is not None else {}))
    everyone: list[Any] = [None] * world_size()
    dist.all_gather_object(everyone, mine)
    if len({tuple(facts[1:]) for facts in everyone}) > 1:
        raise RuntimeError(f"processes ended training with different weights: {everyone}")
    shards = "+".join(str(facts[0]) for facts in everyone)
    digests = ", ".join(facts[1][:16] for facts in everyone)
    trained = f"{len(everyone)} processes trained on {shards} of {total} images per epoch"
    return f"{trained}; weights sha256 per rank: {digests}"
