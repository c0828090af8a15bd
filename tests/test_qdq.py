"""QDQ graph passes: int8 weights in the file, and the onnxruntime layout of an NNCF export."""

from __future__ import annotations

import gc
import json
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

from edgekd.formats.onnx import torch_to_onnx
from edgekd.formats.qdq import (
    _constants,
    float_outputs,
    fold_weight_quantizers,
    for_onnxruntime,
    hardswish_input_ranges,
    onnxruntime_ptq,
    quantize_linear,
    shapes_of_quantized,
    strip_qdq,
)
from edgekd.quantizers.nncf import insert_fake_quant, qdq_export_mode
from edgekd.runtime import open_session
from edgekd.stages.export import ExportConfig, Int8Inputs, export
from edgekd.targets import load_target
from tests.helpers import PREPROCESSING, SIZE, trained_like


def test_quantize_linear_rounds_half_to_even_and_saturates():
    x = np.array([[0.5, 1.5, 2.5, -0.5, 1000.0, -1000.0]], np.float32)
    got = quantize_linear(x, np.array([1.0], np.float32), np.array([0], np.int8), axis=0)
    assert got.dtype == np.int8 and got.tolist() == [[0, 2, 2, 0, 127, -128]]
    # per channel along axis 0, with a zero point
    w = np.array([[1.0, -1.0], [1.0, -1.0]], np.float32)
    got = quantize_linear(w, np.array([0.5, 0.25], np.float32), np.array([10, 0], np.uint8), axis=0)
    assert got.tolist() == [[12, 8], [4, 0]]


def _conv_with_quantized_weight() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    scale = (np.abs(w).reshape(4, -1).max(1) / 127).astype(np.float32)
    nodes = [
        helper.make_node("QuantizeLinear", ["w", "s", "z"], ["wq"], axis=0),
        helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["wd"], axis=0),
        helper.make_node("Conv", ["x", "wd"], ["y"]),
    ]
    inits = [numpy_helper.from_array(a, n) for a, n in [(w, "w"), (scale, "s"), (np.zeros(4, np.int8), "z")]]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_folding_weight_quantizers_stores_int8_and_computes_the_same():
    model = _conv_with_quantized_weight()
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    before = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    assert fold_weight_quantizers(model) == 1
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == ["DequantizeLinear", "Conv"]
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert "w" not in weights and weights["wq"].dtype == np.int8  # the float weights are gone
    after = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_array_equal(after, before)


def _dequantized_shapes(model: onnx.ModelProto) -> int:
    dequantized = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    return sum(n.op_type == "Shape" and n.input[0] in dequantized for n in model.graph.node)


def test_shapes_read_the_quantized_tensor_and_compute_the_same(tmp_path):
    # a channel shuffle reshapes by a dynamic batch: the exporter reads it with Shape
    meta = {"input_size": json.dumps([SIZE, SIZE])}
    fp32 = torch_to_onnx(trained_like("shufflenet_v2_x0_5"), meta, ExportConfig().opset)
    rng = np.random.default_rng(4)
    calibration = [rng.standard_normal((1, 3, SIZE, SIZE), dtype=np.float32) for _ in range(4)]
    quantized = onnxruntime_ptq(fp32, calibration, "u8", True, True)
    assert _dequantized_shapes(quantized) > 0
    runs, float_copies = [], []
    for step in range(2):
        if step:
            shapes_of_quantized(quantized)
            onnx.checker.check_model(quantized)
            assert _dequantized_shapes(quantized) == 0
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(tmp_path / f"optimized{step}.onnx")
        runs.append(ort.InferenceSession(quantized.SerializeToString(), options, providers=["CPUExecutionProvider"]))
        optimized = onnx.load(options.optimized_model_filepath)
        float_copies.append(sum(n.op_type == "DequantizeLinear" for n in optimized.graph.node))
    assert float_copies[1] < float_copies[0]  # onnxruntime no longer dequantizes for the Shapes
    for batch in (1, 3):
        x = rng.standard_normal((batch, 3, SIZE, SIZE), dtype=np.float32)
        before, after = (run.run(None, {"input": x})[0] for run in runs)
        np.testing.assert_array_equal(after, before)


def test_onnxruntime_layout_fuses_every_conv_and_keeps_accuracy(tmp_path):
    model = trained_like("shufflenet_v2_x0_5")
    calibration = [torch.randn(8, 3, SIZE, SIZE) for _ in range(4)]
    flavour = load_target("x86").int8
    quantized = qdq_export_mode(insert_fake_quant(model, flavour, calibration)).eval()
    images = np.random.default_rng(3).standard_normal((64, 3, SIZE, SIZE), dtype=np.float32)
    with torch.no_grad():
        expected = quantized(torch.from_numpy(images)).numpy()
    # the float model under the QDQ export computes (nearly) the fake-quantized model
    nncf_layout = torch_to_onnx(quantized, {"input_size": json.dumps([SIZE, SIZE])}, ExportConfig().opset)
    stripped = strip_qdq(nncf_layout)
    assert not {"QuantizeLinear", "DequantizeLinear"} & {n.op_type for n in stripped.graph.node}
    calib = torch.cat(calibration).numpy()
    (fp32,) = export(ExportConfig(formats=["onnx"]), {"fp32": model}, PREPROCESSING, tmp_path / "fp32")
    (int8,) = export(
        ExportConfig(formats=["onnx"]), {"nncf": quantized}, PREPROCESSING, tmp_path, Int8Inputs(calib, flavour)
    )
    session = open_session("onnxruntime", int8.path, 2)
    got = session.run(images)
    executed = session.executed_precision()
    assert executed["int8_convs"] == executed["convs"] > 0, executed  # NNCF's own layout left convs in float
    assert executed["optimized_ops"].get("Conv", 0) == 0
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.9
    assert int8.size_mb < 0.5 * fp32.size_mb  # int8 weights, not fp32 ones


def _weight_grids(model: onnx.ModelProto, key) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{key(node): (int8 values, scales)} of every weight DequantizeLinear."""
    constants = _constants(model.graph)
    return {
        key(n): (constants[n.input[0]], constants[n.input[1]])
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and constants.get(n.input[0], np.zeros(0)).dtype == np.int8
    }


def test_onnxruntime_layout_keeps_the_trained_weight_grid():
    """Under reduce_range NNCF keeps 8-bit depthwise weights (|q| up to 127); onnxruntime's own
    7-bit grid would round them, so the trained grid is passed through unchanged."""
    flavour = load_target("x86").int8
    calibration = [torch.randn(8, 3, SIZE, SIZE) for _ in range(2)]
    quantized = qdq_export_mode(insert_fake_quant(trained_like("mobilenet_v2"), flavour, calibration)).eval()
    nncf_layout = torch_to_onnx(quantized, {"input_size": json.dumps([SIZE, SIZE])}, ExportConfig().opset)
    batches = [c.numpy() for c in calibration]
    ours = for_onnxruntime(nncf_layout, batches, flavour.activations, flavour.per_channel, flavour.reduce_range)
    # keyed by the float weight: NNCF's DequantizeLinear output, which onnxruntime quantizes as "<name>_quantized"
    trained = _weight_grids(nncf_layout, lambda node: node.output[0])
    exported = _weight_grids(ours, lambda node: node.input[0].removesuffix("_quantized"))
    assert set(exported) == set(trained) and len(trained) > 50
    assert max(int(np.abs(q).max()) for q, _ in trained.values()) == 127  # some weights use all 8 bits
    for name, (q_trained, s_trained) in trained.items():
        q_ours, s_ours = exported[name]
        np.testing.assert_array_equal(q_ours, q_trained)
        np.testing.assert_array_equal(s_ours, s_trained)


def _conv_hardswish_gemm() -> onnx.ModelProto:
    """x -> Conv -> HardSwish -> GlobalAveragePool -> Flatten -> Gemm -> logits, in float."""
    rng = np.random.default_rng(0)
    inits = {
        "w": rng.standard_normal((8, 3, 3, 3)).astype(np.float32),
        "fc": rng.standard_normal((5, 8)).astype(np.float32),
        "fc_b": np.zeros(5, np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["pre"], pads=[1, 1, 1, 1]),
        helper.make_node("HardSwish", ["pre"], ["act"]),
        helper.make_node("GlobalAveragePool", ["act"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc", "fc_b"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 5])],
        [numpy_helper.from_array(a, n) for n, a in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_hardswish_inputs_are_clipped_to_where_the_output_changes():
    model = _conv_hardswish_gemm()
    calibration = [np.random.default_rng(1).standard_normal((4, 3, 8, 8), dtype=np.float32) * 4 for _ in range(2)]
    probe = onnx.ModelProto.FromString(model.SerializeToString())
    probe.graph.output.append(helper.make_tensor_value_info("pre", TensorProto.FLOAT, None))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    pre = np.concatenate([session.run(["pre"], {"x": c})[0] for c in calibration])
    assert pre.min() < -3 and pre.max() > 5  # the calibrated range is wider than what matters
    for trained_max, expected_max in [(5.0, 5.0), (1.0, 3.0)]:  # below 3 HardSwish still bends: keep up to 3
        overrides = {"act": [{"rmin": np.float32(0), "rmax": np.float32(trained_max)}]}
        (got,) = hardswish_input_ranges(model, overrides, calibration)["pre"]
        assert got["rmin"] == np.float32(-3) and got["rmax"] == np.float32(expected_max)
    # a range already trained stays, and a HardSwish whose output QAT left in float gets none
    assert hardswish_input_ranges(model, {"act": [{}], "pre": [{}]}, calibration) == {}
    assert hardswish_input_ranges(model, {}, calibration) == {}


def test_logits_stay_float_and_compute_the_same():
    model = _conv_hardswish_gemm()
    calibration = [np.random.default_rng(2).standard_normal((4, 3, 8, 8), dtype=np.float32) for _ in range(2)]
    quantized = onnxruntime_ptq(model, calibration, "u8", True, False)
    producer = {o: n.op_type for n in quantized.graph.node for o in n.output}
    assert producer["logits"] == "DequantizeLinear"  # onnxruntime's quantizer makes the logits 8-bit
    floated = float_outputs(onnx.ModelProto.FromString(quantized.SerializeToString()))
    assert {o: n.op_type for n in floated.graph.node for o in n.output}["logits"] == "Gemm"
    x = np.random.default_rng(3).standard_normal((128, 3, 8, 8), dtype=np.float32)
    exact, before, after = (
        ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        for m in (model, quantized, floated)
    )
    assert len(np.unique(before)) <= 256 < len(np.unique(after))  # no longer on an 8-bit grid
    assert np.abs(after - exact).mean() < np.abs(before - exact).mean()  # and nearer the float model


def test_onnxruntime_sessions_leave_no_temporary_files(tmp_path, monkeypatch):
    """Each session writes its optimized graph (to tell which kernels run): verify's sessions,
    which never read it, had left one 2-6 MB file in /tmp each."""
    (fp32,) = export(
        ExportConfig(formats=["onnx"]), {"fp32": trained_like("shufflenet_v2_x0_5")}, PREPROCESSING, tmp_path
    )
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    read = open_session("onnxruntime", fp32.path, 1)
    assert read.executed_precision()["convs"] > 0
    unread = open_session("onnxruntime", fp32.path, 1)
    unread.run(np.zeros((1, 3, SIZE, SIZE), np.float32))
    del read, unread
    gc.collect()
    assert list(temporary.iterdir()) == []
