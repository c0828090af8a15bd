"""The boards' cost model: FLOPs and bytes counted from ONNX graphs, and estimated rows that
say so everywhere (row, JSON, table, plot label), never passing for measurements."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from edgekd.costmodel import CostModel, estimate_ms, layers
from edgekd.stages.bench import BenchConfig, bench
from edgekd.stages.export import ExportConfig, export
from edgekd.targets import load_target
from tests.test_export import PREPROCESSING, trained_like


def conv_graph(path, group: int, cin: int, quantized: bool) -> str:
    """input (1, cin, 16, 16) -> Conv 3x3 pad 1 -> (1, 8 or cin, 16, 16)."""
    cout = cin if group > 1 else 8
    weight = numpy_helper.from_array(np.ones((cout, cin // group, 3, 3), np.float32), "w")
    nodes, conv_in, inits = [], "x", [weight]
    if quantized:
        inits += [numpy_helper.from_array(np.float32(0.1), "s"), numpy_helper.from_array(np.uint8(128), "z")]
        nodes += [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"])]
        nodes += [helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"])]
        conv_in = "dq"
    nodes.append(helper.make_node("Conv", [conv_in, "w"], ["y"], pads=[1, 1, 1, 1], group=group))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return str(path)


def test_flops_bytes_and_kinds_are_counted_from_the_graph(tmp_path):
    (dense,) = layers(conv_graph(tmp_path / "dense.onnx", 1, 4, quantized=False))
    assert dense.kind == "conv" and not dense.int8
    assert dense.flops == 2 * (8 * 16 * 16) * (4 * 3 * 3)
    assert dense.bytes == 4 * (4 * 16 * 16 + 8 * 4 * 3 * 3 + 8 * 16 * 16)
    (depthwise,) = layers(conv_graph(tmp_path / "dw.onnx", 4, 4, quantized=False))
    assert depthwise.kind == "depthwise" and depthwise.flops == 2 * (4 * 16 * 16) * 9
    (int8,) = layers(conv_graph(tmp_path / "q.onnx", 1, 4, quantized=True))  # Q/DQ cost nothing themselves
    assert int8.int8 and int8.bytes == dense.bytes / 4


def test_estimate_is_the_roofline_sum(tmp_path):
    (layer,) = layers(conv_graph(tmp_path / "dense.onnx", 1, 4, quantized=False))
    board = CostModel(
        conv_gflops=1.0,
        depthwise_gflops=1.0,
        bandwidth_gbs=1e6,
        overhead_us=10.0,
        threads=4,
        source="test",
        calibration="test",
    )
    assert estimate_ms([layer], board) == pytest.approx(layer.flops / 1e9 * 1000 + 0.010)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    out = tmp_path_factory.mktemp("boards")
    # leave the session's torch RNG as it was: later modules' random models depend on it
    with torch.random.fork_rng():
        return export(ExportConfig(), {"fp32": trained_like("mobilenet_v3_small")}, PREPROCESSING, out)


@pytest.mark.parametrize("board", ["rpi4", "rpi5", "jetson-orin-cpu"])
def test_board_rows_are_estimated_and_labelled(board, artifacts):
    target = load_target(board)
    assert target.cost_model.source and "%" in target.cost_model.calibration
    onnx_row, openvino_row = bench(BenchConfig(), artifacts, target)
    assert onnx_row["status"] == "ok" and onnx_row["measured"] is False
    assert onnx_row["p50_ms"] > 0 and "cost model" in onnx_row["estimated_by"]
    assert not {"p90_ms", "p99_ms", "peak_rss_mb"} & set(onnx_row)  # nothing claimed beyond the estimate
    assert openvino_row["status"] == "not run"
