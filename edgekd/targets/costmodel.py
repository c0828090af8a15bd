"""The FLOP model: estimated latency on a board edgekd cannot reach where the ARM instructions
of its artifacts cannot be profiled (`edgekd.targets.armtiming` is the first choice), in two factors,
each fitted to published measurements (docs/cost-model.md, benchmarks/calibrate_flop_model.py):

1. ncnn's fp32 latency of the graph on that board: per-layer FLOPs and bytes read from the
   ONNX graph (onnx shape inference) against rates fitted to ncnn's own benchmark tables;
2. the runtime's latency relative to ncnn's on the same model and board, the median of the
   published side-by-side pairs (`RUNTIME_RATIOS`).

Each layer takes FLOPs / compute rate + bytes / memory bandwidth + a fixed per-layer overhead:
additive rather than a roofline's max, so that the fit stays linear (non-negative least
squares) and determined by the few published measurements there are. The error band of an
estimate combines the fit's leave-one-out error with the spread of the runtime ratio. int8 is
not estimated: no published int8 latency of onnxruntime or OpenVINO on a Cortex-A board was
found to ground it. Every figure it gives is labelled an estimate wherever it appears.
"""

from __future__ import annotations

import math
import statistics
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
    """ncnn's fp32 throughput on one board, as fitted; `source` and `calibration` say from what."""

    model_config = ConfigDict(extra="forbid")

    board: str = Field(description="the board's name as reports print it")
    conv_gflops: float = Field(gt=0, description="dense convolutions and matrix products, fp32")
    depthwise_gflops: float = Field(gt=0, description="depthwise convolutions, fp32")
    bandwidth_gbs: float = Field(gt=0, description="effective memory bandwidth")
    overhead_us: float = Field(ge=0, description="fixed cost per executed layer")
    threads: int = Field(ge=1, description="threads the calibration measurements used")
    loo_error: float = Field(ge=0, description="leave-one-out mean |relative error| of the fit")
    source: str
    calibration: str = Field(description="the fit's error against its measurements, as docs/cost-model.md states")


@dataclass(frozen=True)
class RuntimeRatio:
    """A runtime's latency over ncnn's, same model, same board, from published pairs."""

    pairs: tuple[float, ...]
    board: str
    source: str

    @property
    def ratio(self) -> float:
        return statistics.median(self.pairs)

    @property
    def spread(self) -> float | None:
        """Mean |relative deviation| of the pairs from their median; None from a single pair."""
        if len(self.pairs) < 2:
            return None
        return statistics.fmean(abs(p / self.ratio - 1) for p in self.pairs)


_VISIONANALYSIS = "visionanalysis.org/articles/ncnn-fp32-vs-onnx-fp32-rpi5 (13 detection models, fp32)"
_ARM_YOLO26 = "huggingface.co/Arm/Arm-Runtime-for-YOLO26-on-Raspberry-Pi-5 (YOLO26n 640x640: ncnn 67.2 ms"
RUNTIME_RATIOS = {
    "onnxruntime": RuntimeRatio(
        pairs=(2.87, 2.85, 2.72, 2.61, 2.44, 2.26, 2.09, 1.97, 1.87, 1.44, 1.36, 1.33, 1.25, 126.9 / 67.2),
        board="Raspberry Pi 5",
        source=f"{_VISIONANALYSIS}; {_ARM_YOLO26}, onnxruntime 126.9 ms)",
    ),
    "openvino": RuntimeRatio(
        pairs=(102.0 / 67.2,), board="Raspberry Pi 5", source=f"{_ARM_YOLO26}, OpenVINO 102.0 ms)"
    ),
}


def band(board: CostModel, runtime: str) -> float:
    """The estimate's relative error band: the fit's leave-one-out error and the runtime
    ratio's spread, independent, added in quadrature. A runtime with one published pair
    borrows onnxruntime's spread (docs/cost-model.md says so)."""
    spread = RUNTIME_RATIOS[runtime].spread
    if spread is None:
        spread = RUNTIME_RATIOS["onnxruntime"].spread
    return math.hypot(board.loo_error, spread)


@dataclass
class Layer:
    op: str
    kind: str  # "conv", "depthwise", "elementwise"
    flops: float
    bytes: float
    int8: bool


@dataclass(frozen=True)
class Estimate:
    board: str
    runtime: str
    p50_ms: float
    band: float  # relative, e.g. 0.35 for ±35%

    def label(self) -> str:
        return f"{self.p50_ms:.1f} ms ±{self.band:.0%} (estimated from FLOPs, {self.board})"


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


def ncnn_ms(graph: list[Layer], board: CostModel) -> float:
    """ncnn's fp32 latency of `graph` on the board, as the fit models it."""
    rates = {"conv": board.conv_gflops, "depthwise": board.depthwise_gflops}
    total_s = 0.0
    for layer in graph:
        rate = rates.get(layer.kind)
        compute = layer.flops / (rate * 1e9) if rate else 0.0
        memory = layer.bytes / (board.bandwidth_gbs * 1e9)
        total_s += compute + memory + board.overhead_us * 1e-6
    return total_s * 1000


def outside_calibration(onnx_path: str) -> str | None:
    """A note when the graph's input is far from the 224x224 frames the fits were made on."""
    import onnx

    dims = onnx.load(onnx_path, load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    height, width = (d.dim_value for d in dims[-2:])
    if height and width and not 224 * 224 / 4 <= height * width <= 224 * 224 * 4:
        return (
            f"input {height}x{width} is far from the 224x224 the boards' fits were made on: "
            "the per-layer overhead dominates and the band is a floor, not a bound"
        )
    return None


def why_not_estimated(graph: list[Layer], runtime: str) -> str | None:
    if any(layer.int8 for layer in graph):
        return (
            "int8: no published int8 latency of onnxruntime or OpenVINO on a Cortex-A board "
            "to ground an estimate (measure with --device ssh://user@board)"
        )
    if runtime == "ncnn":
        return (
            "the boards' fits are benchncnn's defaults (fp16 arithmetic where the CPU has it); "
            "edgekd runs ncnn in fp32, as verified"
        )
    if runtime not in RUNTIME_RATIOS:
        return f"no published {runtime} vs ncnn measurements to scale the estimate by"
    return None


def estimate(graph: list[Layer], board: CostModel, runtime: str) -> Estimate:
    """The runtime's fp32 latency of `graph` on the board (check `why_not_estimated` first)."""
    p50 = ncnn_ms(graph, board) * RUNTIME_RATIOS[runtime].ratio
    return Estimate(board.board, runtime, p50, band(board, runtime))
