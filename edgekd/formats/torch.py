"""A `torch.export` program (.pt2) for GPUs (runtime torch-cuda): it runs with torch alone, no
edgekd model code. fp32 only: fp16 is a load-time choice, and GPU int8 goes through ONNX."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

from edgekd.formats.base import Format, example_input, register
from edgekd.io import atomic_path

if TYPE_CHECKING:
    from torch import nn


def torch2pt2(model: nn.Module, dest: Path, meta: dict[str, str], opset: int, int8=None) -> Path:
    import torch

    example = example_input(meta, batch=2)  # batch 2: 1 would be specialized
    program = torch.export.export(
        model.eval(), (example,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},)
    )
    buffer = io.BytesIO()  # torch.export.save wants a .pt2 name; the temporary one is not
    torch.export.save(program, buffer, extra_files={"edgekd.json": json.dumps(meta)})
    with atomic_path(dest) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return dest


TORCH = register(
    Format(
        "torch", "PyTorch (torch.export)", "torch", ".pt2", ".pt2", torch2pt2, precisions=("fp32",),
        predicts=False,
    )
)  # fmt: skip
