"""Store a QDQ model's weights as 8-bit integers.

The TorchScript exporter writes NNCF's weight quantizers as float weights followed by
QuantizeLinear: the file then holds fp32 weights (an "int8" model as large as the fp32 one)
and every runtime re-quantizes them at load. Evaluating each QuantizeLinear whose input is
a constant, once, gives the int8 tensor onnxruntime's own quantizer writes: an initializer
feeding the DequantizeLinear. The graph computes exactly what it computed before (the
same rounding and saturation as QuantizeLinear), in about a quarter of the bytes.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def quantize_linear(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int) -> np.ndarray:
    """ONNX QuantizeLinear: saturate(round_half_even(x / scale) + zero_point), per tensor or per `axis`."""
    if scale.ndim == 1:
        shape = [1] * x.ndim
        shape[axis] = -1
        scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
    info = np.iinfo(zero_point.dtype)
    q = np.rint(x.astype(np.float32) / scale) + zero_point.astype(np.int32)
    return np.clip(q, info.min, info.max).astype(zero_point.dtype)


def fold_weight_quantizers(model: onnx.ModelProto) -> int:
    """Replaces every QuantizeLinear of a constant by its int8 result, in place; returns how many."""
    graph = model.graph
    constants = _constants(graph)
    consumers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    folded, keep = [], []
    for node in graph.node:
        if node.op_type == "QuantizeLinear" and len(node.input) == 3 and all(i in constants for i in node.input):
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            x, scale, zero_point = (constants[i] for i in node.input)
            q = quantize_linear(x, scale, zero_point, axis)
            graph.initializer.append(numpy_helper.from_array(q, node.output[0]))
            folded.append(node)
        else:
            keep.append(node)
    if not folded:
        return 0
    # the float weights and any Constant nodes nothing else reads go with their quantizers
    for node in folded:
        for name in node.input:
            consumers[name] -= 1
    unused = {name for name, count in consumers.items() if count == 0}
    keep = [n for n in keep if not (n.op_type == "Constant" and n.output[0] in unused)]
    weights = [t for t in graph.initializer if t.name not in unused]
    del graph.node[:]
    graph.node.extend(keep)
    del graph.initializer[:]
    graph.initializer.extend(weights)
    return len(folded)


def strip_qdq(model: onnx.ModelProto) -> onnx.ModelProto:
    """The float model under a QDQ one (weights folded first): each weight becomes its
    dequantized value, so it stays on its trained grid, and each activation QuantizeLinear ->
    DequantizeLinear pair is removed."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    fold_weight_quantizers(model)
    graph = model.graph
    constants = _constants(graph)
    producer = {out: node for node in graph.node for out in node.output}
    weights = {t.name for t in graph.initializer}
    rename: dict[str, str] = {}  # an activation DequantizeLinear's output -> the float tensor it stands for
    drop: set[int] = set()
    for node in graph.node:
        if node.op_type != "DequantizeLinear":
            continue
        q_name, scale, zero_point = node.input[0], constants[node.input[1]], constants[node.input[2]]
        if q_name in weights:
            shape = [1] * constants[q_name].ndim
            if scale.ndim == 1:
                shape[next((a.i for a in node.attribute if a.name == "axis"), 1)] = -1
            w = (constants[q_name].astype(np.float32) - zero_point.reshape(shape)) * scale.reshape(shape)
            graph.initializer.append(numpy_helper.from_array(w.astype(np.float32), node.output[0]))
        else:
            rename[node.output[0]] = producer[q_name].input[0]
            drop.add(id(producer[q_name]))
        drop.add(id(node))
    keep = [n for n in graph.node if id(n) not in drop]
    for node in keep:
        for i, name in enumerate(node.input):
            node.input[i] = rename.get(name, name)
    used = {name for n in keep for name in n.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.node[:]
    graph.node.extend(n for n in keep if not (n.op_type == "Constant" and n.output[0] not in used))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return model


def for_onnxruntime(
    model: onnx.ModelProto, calibration: list[np.ndarray], activations: str, per_channel: bool, reduce_range: bool
) -> onnx.ModelProto:
    """The QDQ model laid out the way onnxruntime fuses it into integer kernels.

    NNCF puts a quantizer on each input of each quantizable operation: the layout OpenVINO
    fuses. onnxruntime fuses only where every tensor around an operation is quantized (Conv
    outputs, Add, Concat, channel shuffles): on NNCF's layout it runs the rest in float, with
    conversions between, up to 3x slower than its own quantizer's output. So the float model
    under the QDQ one, whose weights QAT trained for their 8-bit grid, is quantized again by
    onnxruntime's quantizer in the target's flavour, activation ranges from `calibration`
    (batches of training images). Keeping NNCF's activation scales as overrides on top of this
    lost 14 points of accuracy on the embedded digits; recalibrating lost none.
    """
    return onnxruntime_ptq(strip_qdq(model), calibration, activations, per_channel, reduce_range)


def onnxruntime_ptq(
    model: onnx.ModelProto, calibration: list[np.ndarray], activations: str, per_channel: bool, reduce_range: bool
) -> onnx.ModelProto:
    """onnxruntime's own static quantization of a float model, QDQ format, s8 weights,
    `activations` "u8" or "s8", activation ranges from the `calibration` batches."""
    import tempfile
    from pathlib import Path

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name = model.graph.input[0].name

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(calibration)

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {name: batch}

    with tempfile.TemporaryDirectory(prefix="edgekd-qdq-") as tmp:
        source, ready, dest = (Path(tmp) / f"{n}.onnx" for n in ("float", "ready", "int8"))
        onnx.save(model, source)
        quant_pre_process(str(source), str(ready))  # shape inference and fusions the quantizer relies on
        quantize_static(
            str(ready),
            str(dest),
            Batches(),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8 if activations == "u8" else QuantType.QInt8,
            weight_type=QuantType.QInt8,
            reduce_range=reduce_range,
        )
        return onnx.load(dest)
