"""The boards' FLOP model (the fallback where ARM instructions cannot be profiled): FLOPs and
bytes counted from ONNX graphs, and estimated rows that say so everywhere (row, JSON, table,
plot label), never passing for measurements."""

from __future__ import annotations

import math
import re

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from edgekd.reporting.text import cell
from edgekd.stages.bench import BenchConfig, bench, board_estimates
from edgekd.stages.export import ExportConfig, export
from edgekd.targets import load_target
from edgekd.targets.costmodel import RUNTIME_RATIOS, CostModel, estimate, layers, ncnn_ms, why_not_estimated
from edgekd.targets.kinds import place
from tests.helpers import PREPROCESSING, trained_like


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


def test_estimate_is_ncnns_sum_times_the_runtimes_published_ratio(tmp_path):
    (layer,) = layers(conv_graph(tmp_path / "dense.onnx", 1, 4, quantized=False))
    board = CostModel(
        board="Test Board",
        conv_gflops=1.0,
        depthwise_gflops=1.0,
        bandwidth_gbs=1e6,
        overhead_us=10.0,
        threads=4,
        loo_error=0.3,
        source="test",
        calibration="test",
    )
    ncnn = layer.flops / 1e9 * 1000 + layer.bytes / 1e15 * 1000 + 0.010
    assert ncnn_ms([layer], board) == pytest.approx(ncnn)
    guess = estimate([layer], board, "onnxruntime")
    # the median of the 14 published Raspberry Pi 5 pairs; the band adds the fit's and the ratio's errors
    assert RUNTIME_RATIOS["onnxruntime"].ratio == pytest.approx((1.97 + 2.09) / 2)
    assert guess.p50_ms == pytest.approx(ncnn * RUNTIME_RATIOS["onnxruntime"].ratio)
    assert guess.band == pytest.approx(math.hypot(0.3, RUNTIME_RATIOS["onnxruntime"].spread))
    assert re.fullmatch(r"\d+\.\d ms ±\d+% \(estimated from FLOPs, Test Board\)", guess.label())
    # one published pair has no spread of its own: it borrows onnxruntime's, never a zero band
    assert RUNTIME_RATIOS["openvino"].spread is None
    assert estimate([layer], board, "openvino").band == pytest.approx(guess.band)


def test_int8_graphs_are_not_estimated(tmp_path):
    graph = layers(conv_graph(tmp_path / "q.onnx", 1, 4, quantized=True))
    assert "int8: no published" in why_not_estimated(graph, "onnxruntime")
    fp32 = layers(conv_graph(tmp_path / "f.onnx", 1, 4, quantized=False))
    assert why_not_estimated(fp32, "onnxruntime") is None
    assert "no published" in why_not_estimated(fp32, "tflite")


FLOPS_ONLY = BenchConfig(arm_profiles=False)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    out = tmp_path_factory.mktemp("boards")
    # leave the session's torch RNG as it was: later modules' random models depend on it
    with torch.random.fork_rng():
        return export(ExportConfig(), {"fp32": trained_like("mobilenet_v3_small")}, PREPROCESSING, out)


@pytest.mark.parametrize("board", ["rpi4", "rpi5", "jetson-orin-cpu"])
def test_board_rows_are_estimated_and_labelled(board, artifacts):
    target = load_target(board)
    model = target.cost_model
    assert "ncnn" in model.source and "leave-one-out" in model.calibration and 0 < model.loo_error < 1
    rows = bench(FLOPS_ONLY, artifacts, place(target))
    assert [r.runtime for r in rows] == ["onnxruntime", "openvino"]  # the IR: estimated from its ONNX twin
    for row in rows:
        assert row.status == "ok" and row.measured is False
        assert row.p50_ms > 0 and "ncnn" in row.estimated_by and "published pair" in row.scaled_by
        assert row.estimate.endswith(f"(estimated from FLOPs, {model.board})") and "±" in row.estimate
        assert "arm_profiles = false" in row.estimated_by  # says why it is not the instruction estimate
        assert not {"p90_ms", "p99_ms", "peak_rss_mb"} & row.model_fields_set  # nothing claimed beyond the estimate
        assert cell(row, "p50_ms", "{:.3f}") == row.estimate  # never a bare number in a table


def test_arm_gets_every_named_boards_estimates(artifacts):
    boards = board_estimates(artifacts, place(load_target("arm")), FLOPS_ONLY)
    assert [b.target for b in boards] == ["jetson-orin-cpu", "rpi4", "rpi5"]
    assert all(r.status == "ok" for b in boards for r in b.rows)
    # a board's own table carries its estimate
    assert board_estimates(artifacts, place(load_target("rpi5")), FLOPS_ONLY) == []
