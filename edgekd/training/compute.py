"""Where training runs: on a CUDA GPU when there is one (bf16 autocast, channels_last), else on
the CPU in fp32, unchanged.

Models live on the CPU between stages, in fp32 and the default memory format: `on_device` moves
them for the length of a training run or a prediction and back, so saved weights, exports and
the later stages never see a GPU tensor (epoch checkpoints load onto the CPU in any case).
Autocast keeps parameters fp32; only activations run bf16.
"""

from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from typing import ContextManager, Iterator, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from edgekd.errors import EdgekdError


class ComputeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device: Literal["auto", "cuda", "cpu"] = Field("auto", description="auto = cuda when a GPU is visible, else cpu")
    mixed_precision: bool = Field(True, description="on CUDA: bf16 autocast and channels_last (the CPU stays fp32)")


_config = ComputeConfig()


def configure(cfg: ComputeConfig) -> None:
    """Sets where this process trains (the `[compute]` section); called once per command."""
    global _config
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise EdgekdError('[compute] device = "cuda" but no CUDA device is visible; set it to "auto" or "cpu"')
    _config = cfg


def device() -> torch.device:
    """The training device; under torchrun each process takes the GPU of its local rank."""
    if _config.device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def fast(mixed_precision: bool = True) -> bool:
    """Whether bf16 autocast and channels_last apply: on CUDA only, unless turned off."""
    return mixed_precision and _config.mixed_precision and device().type == "cuda"


def autocast(enabled: bool) -> ContextManager:
    return torch.autocast("cuda", dtype=torch.bfloat16) if enabled else nullcontext()


@contextmanager
def on_device(
    *modules: nn.Module, target: torch.device | None = None, channels_last: bool = False
) -> Iterator[torch.device]:
    """Moves `modules` to `target` (default: the training device; channels_last weights when
    asked) and back to where they were, in the default memory format, afterwards."""
    target = target or device()
    homes = [model_device(m) for m in modules]
    if all(home == target for home in homes) and not channels_last:  # e.g. everything on the CPU
        yield target
        return
    layout = torch.channels_last if channels_last else torch.preserve_format
    for m in modules:
        m.to(target, memory_format=layout)
    try:
        yield target
    finally:
        for m, home in zip(modules, homes):
            m.to(home, memory_format=torch.contiguous_format)


def model_device(model: nn.Module) -> torch.device:
    """The device of the first parameter (CPU for a parameterless model)."""
    return next(model.parameters(), torch.empty(0)).device


def to_device(batch: list[torch.Tensor], target: torch.device, channels_last: bool = False) -> list[torch.Tensor]:
    """A loader's batch on `target`: images (the first tensor) in channels_last when asked."""
    if target.type == "cpu":
        return batch
    images = batch[0].to(target, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return [images, *(t.to(target, non_blocking=True) for t in batch[1:])]
