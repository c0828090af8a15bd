"""Estimated latency on a board edgekd cannot reach: per-layer FLOPs and bytes read from the
ONNX graph (onnx shape inference), against the board's throughput parameters, which were
fitted to published measurements (docs/cost-model.md, benchmarks/calibrate_cost_model.py).

Each layer takes FLOPs / compute rate + bytes / memory bandwidth + a fixed per-layer overhead:
additive rather than a roofline's max, so that the fit stays linear (non-negative least
squares) and determined by the few published measurements there are. Every figure it gives is an estimate and is
labelled so wherever it appears; it never stands in for a measurement.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

# operators runtimes fuse into their neighbours (QDQ pairs, shape plumbing): no cost of their own
FREE = {
    "QuantizeLinear",
    "DequantizeLinear",
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Identity",
    "Constant",
    "Shape",
    "Gather",
    "Concat",
    "Transpose",
    "Split",
    "Slice",
}


class CostModel(BaseModel):
    """A board's throughput, as fitted; `source` and `calibration` say where the numbers come from."""

    model_config = ConfigDict(extra="forbid")

    conv_gflops: float = Field(gt=0, description="dense convolutions and matrix products, fp32")
    depthwise_gflops: float = Field(gt=0, description="depthwise convolutions, fp32")
    bandwidth_gbs: float = Field(gt=0, description="effective memory bandwidth")
    overhead_us: float = Field(ge=0, description="fixed cost per executed layer")
    int8_speedup: float = Field(1.0, gt=0, description="compute-rate factor of int8 kernels over fp32")
    threads: int = Field(ge=1, description="threads the calibration measurements used")
    source: str
    calibration: str = Field(description="the fit's error against its measurements, as docs/cost-model.md states")


@dataclass
class Layer:
    op: str
    kind: str  # "conv", "depthwise", "elementwise"
    flops: float
    bytes: float
    int8: bool


def _shapes(model) -> dict[str, list[int]]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.dim_value > 0 else 1 for d in dims]  # batch (symbolic) = 1
    for init in inferred.graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def layers(onnx_path: str) -> list[Layer]:
    """The layers of an ONNX graph with their FLOPs and bytes moved, batch 1."""
    import onnx

    model = onnx.load(onnx_path)
    shapes = _shapes(model)
    made_by = {out: node.op_type for node in model.graph.node for out in node.output}
    result = []
    for node in model.graph.node:
        if node.op_type in FREE:
            continue
        out = shapes.get(node.output[0], [])
        out_size = float(np.prod(out)) if out else 0.0
        # int8 when the runtime gets it from a DequantizeLinear (a QDQ graph's quantized operator)
        int8 = bool(node.input) and made_by.get(node.input[0]) == "DequantizeLinear"
        width = 1 if int8 else 4
        moved = sum(float(np.prod(shapes.get(name, [0]))) for name in node.input if name) + out_size
        if node.op_type == "Conv":
            weight = shapes.get(node.input[1], [])
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            cin = shapes.get(node.input[0], [0, 0])[1]
            flops = 2.0 * out_size * float(np.prod(weight[1:])) if weight else 0.0
            kind = "depthwise" if group > 1 and group == cin else "conv"
        elif node.op_type in ("Gemm", "MatMul"):
            a = shapes.get(node.input[0], [1])
            flops, kind = 2.0 * out_size * a[-1], "conv"
        else:
            flops, kind = out_size, "elementwise"
        result.append(Layer(node.op_type, kind, flops, moved * width, int8))
    return result


def estimate_ms(graph: list[Layer], board: CostModel) -> float:
    rates = {"conv": board.conv_gflops, "depthwise": board.depthwise_gflops}
    total_s = 0.0
    for layer in graph:
        rate = rates.get(layer.kind)
        compute = layer.flops / (rate * 1e9 * (board.int8_speedup if layer.int8 else 1.0)) if rate else 0.0
        memory = layer.bytes / (board.bandwidth_gbs * 1e9)
        total_s += compute + memory + board.overhead_us * 1e-6
    return total_s * 1000
