"""ExecuTorch with the XNNPACK delegate (ARM and x86 CPUs), batch 1 as apps run it: int8 from PT2E
QAT in XNNPACK's scheme. The metadata is a constant method, `edgekd_metadata`, returning the JSON
of ONNX's key/values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from edgekd.formats.app_code import python_snippet
from edgekd.formats.base import Format, example_input, register
from edgekd.io import atomic_path

if TYPE_CHECKING:
    from torch import nn


def lower_to_xnnpack(model: nn.Module, meta: dict[str, str]):
    """The model's program with XNNPACK's partitions delegated (ExecuTorch's edge program manager,
    which also says what was delegated), before it is serialized."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from edgekd.quantizers.xnnpack import with_int8_weights

    model.eval()  # not inline: an exported graph's eval (torchao's) returns None
    if meta["precision"] == "int8":
        model = with_int8_weights(model)
    program = torch.export.export(model, (example_input(meta),))
    return to_edge_transform_and_lower(
        program, partitioner=[XnnpackPartitioner()], constant_methods={"edgekd_metadata": json.dumps(meta)}
    )


def torch2executorch(model: nn.Module, dest: Path, meta: dict[str, str], opset: int, int8=None) -> Path:
    lowered = lower_to_xnnpack(model, meta).to_executorch()
    with atomic_path(dest) as tmp:
        tmp.write_bytes(lowered.buffer)
    return dest


SNIPPET = python_snippet(
    "executorch",
    "executorch",
    "import torch\nfrom executorch.runtime import Runtime",
    'program = Runtime.get().load_program("{path}")\n'
    'embedded = json.loads(program.load_method("edgekd_metadata").execute([])[0])\n'
    "meta = {{k: json.loads(embedded[k]) for k in {keys}}}\n"
    'forward = program.load_method("forward")',
    "forward.execute([torch.from_numpy(x)])[0][0].numpy()",
    "the same with ExecuTorch's Python runtime",
)

EXECUTORCH = register(
    Format(
        "executorch", "ExecuTorch (XNNPACK)", "executorch", ".pte", ".pte", torch2executorch,
        quantizer="xnnpack", extra="executorch", snippets=(SNIPPET,),
    )
)  # fmt: skip
