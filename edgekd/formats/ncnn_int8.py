"""ncnn's int8 model from a PT2E-quantized graph: what ncnn's `ncnn2int8` tool does, which no
wheel ships, with the scales the QAT trained instead of a calibration table.

ncnn computes convolutions and inner products in int8 from per-channel symmetric weight scales
(the XNNPACK quantizer's weight scheme, so the trained int8 weights carry over exactly) and one
symmetric scale for the layer's input; XNNPACK's input ranges are asymmetric, so ncnn's input
scale covers the larger side of the trained range. Every other layer runs in fp32 as ncnn does.
pnnx converts the graph with its quantize/dequantize pairs removed; each ncnn layer then finds
its scales by its fp32 weights, which pnnx writes as the graph holds them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path

import numpy as np
import torch
from torch import fx

from edgekd.errors import EdgekdError
from edgekd.runtime.ncnn import CONVS

TAG_INT8 = 0x000D4B38  # ncnn's ModelBin: int8 weights follow, padded to 4 bytes
TAG_FP32 = 0
QUANTIZED = {"Convolution": 2, "ConvolutionDepthWise": 1, "InnerProduct": 2}  # layer -> int8_scale_term
assert set(QUANTIZED) == set(CONVS), "the layers written in int8 are those the ncnn session counts"
# pnnx's layers without weights in the bin; a layer type outside both sets stops the rewrite
WEIGHTLESS = {
    "Input", "Split", "BinaryOp", "UnaryOp", "Pooling", "Flatten", "Reshape", "ReLU", "Clip", "HardSwish",
    "HardSigmoid", "Sigmoid", "Swish", "Mish", "GELU", "TanH", "ELU", "Concat", "Slice", "Crop",
    "ShuffleChannel", "Permute", "Softmax", "Dropout", "Noop", "Eltwise", "Padding", "Interp", "Reduction",
    "Squeeze", "ExpandDims",
}  # fmt: skip


@dataclass
class LayerScales:
    weight_int8: np.ndarray  # the QAT's int8 weights, as its quantize op rounds them
    weight_scales: np.ndarray  # ncnn's per-output-channel multipliers: 1 / the QAT's scale
    input_scale: float  # ncnn's multiplier for the layer's input: 127 / its trained absolute range


def _ops():
    q = torch.ops.quantized_decomposed
    return (
        {q.quantize_per_tensor.default, q.quantize_per_channel.default},
        {q.dequantize_per_tensor.default, q.dequantize_per_channel.default},
    )


def _value(graph: fx.GraphModule, node: fx.Node) -> torch.Tensor:
    return attrgetter(node.target)(graph)


def layer_scales(graph: fx.GraphModule) -> dict[bytes, LayerScales]:
    """The quantized convolutions and linears of a converted PT2E graph (weights unfolded), keyed
    by their fp32 weights' bytes."""
    quantize, dequantize = _ops()
    layers = {}
    for node in graph.graph.nodes:
        if node.target not in (torch.ops.aten.conv2d.default, torch.ops.aten.linear.default):
            continue
        x, w = node.args[0], node.args[1]
        if not (x.target in dequantize and w.target in dequantize and w.args[0].target in quantize):
            continue
        q = w.args[0]
        weight = _value(graph, q.args[0]).detach()
        # per channel: scales and zero points are tensors of the graph; per tensor: numbers
        qparams = [_value(graph, a) if isinstance(a, fx.Node) else a for a in q.args[1:]]
        weight_int8 = q.target(weight, *qparams)
        w_scale, w_zero = torch.as_tensor(qparams[0]), torch.as_tensor(qparams[1])
        s, zero, qmin, qmax = (float(a) for a in x.args[1:5])
        absmax = max(abs((qmin - zero) * s), abs((qmax - zero) * s))
        if torch.any(w_zero != 0):
            raise EdgekdError("ncnn int8 needs symmetric weights; the QAT's weights have zero points")
        scales = (1 / w_scale.float()).expand(weight.shape[0]).numpy()
        layers[weight.float().numpy().tobytes()] = LayerScales(
            weight_int8.numpy().astype(np.int8), np.ascontiguousarray(scales, np.float32), 127 / absmax
        )
    return layers


def float_graph(graph: fx.GraphModule) -> fx.GraphModule:
    """A copy without quantize/dequantize pairs: the fp32 graph pnnx traces."""
    quantize, dequantize = _ops()
    stripped = copy.deepcopy(graph)
    for node in list(stripped.graph.nodes):
        if node.target in dequantize and node.args[0].target in quantize:
            node.replace_all_uses_with(node.args[0].args[0])
    for node in reversed(list(stripped.graph.nodes)):
        # torch.export's guard call checks input shapes, which TorchScript cannot trace
        if (node.target in quantize or node.target in dequantize or node.op == "call_module") and not node.users:
            stripped.graph.erase_node(node)
    stripped.graph.eliminate_dead_code()
    stripped.recompile()
    return stripped


def _params(fields: list[str]) -> dict[int, str]:
    return {int(k): v for k, v in (f.split("=", 1) for f in fields)}


def rewrite(param: Path, weights: Path, layers: dict[bytes, LayerScales]) -> tuple[str, bytes, int, int]:
    """The int8 param text and bin of the fp32 model pnnx wrote (with fp16 storage off), and how
    many of its quantizable layers found their scales."""
    lines, data = param.read_text().splitlines(), weights.read_bytes()
    out_lines, out, pos, found, total = lines[:2], bytearray(), 0, 0, 0

    def take(count: int) -> bytes:
        nonlocal pos
        pos += count
        return data[pos - count : pos]

    for line in lines[2:]:
        fields = line.split()
        kind, (count_in, count_out) = fields[0], (int(fields[2]), int(fields[3]))
        params = _params(fields[4 + count_in + count_out :])
        if kind in WEIGHTLESS:
            out_lines.append(line)
            continue
        if kind not in QUANTIZED:
            raise EdgekdError(f"ncnn int8: pnnx wrote a {kind} layer, whose weights edgekd does not rewrite")
        total += 1
        size, bias = (params[6], params.get(5, "0")) if kind != "InnerProduct" else (params[2], params.get(1, "0"))
        size, bias, outputs = int(size), bias == "1", int(params[0])
        if int.from_bytes(take(4), "little") != TAG_FP32:
            raise EdgekdError("ncnn int8 rewrites fp32 weights; export with pnnx's fp16 off")
        weight = take(4 * size)
        bias_data = take(4 * outputs) if bias else b""
        scales = layers.get(weight)
        # a layer the QAT left in fp32 stays so, as does a grouped (not depthwise) convolution:
        # ncnn has one weight scale per group there, XNNPACK one per output channel
        if scales is None or (kind == "ConvolutionDepthWise" and params[7] != params[0]):
            out_lines.append(line)
            out += TAG_FP32.to_bytes(4, "little") + weight + bias_data
            continue
        found += 1
        term = QUANTIZED[kind]
        out_lines.append(f"{line} 8={term}")
        padded = scales.weight_int8.tobytes() + b"\0" * (-size % 4)
        out += TAG_INT8.to_bytes(4, "little") + padded + bias_data
        out += scales.weight_scales.tobytes() + np.float32(scales.input_scale).tobytes()
    if pos != len(data):
        raise EdgekdError(f"ncnn int8: {len(data) - pos} bytes of {weights.name} belong to no layer read")
    return "\n".join(out_lines) + "\n", bytes(out), found, total
