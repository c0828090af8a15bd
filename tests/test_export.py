"""Export parity: the same inputs through PyTorch, onnxruntime and OpenVINO."""

from __future__ import annotations

import json

import numpy as np
import onnx
import openvino as ov
import pytest
import torch

from edgekd.quantizers.nncf import fold_batchnorm, insert_fake_quant, qdq_export_mode
from edgekd.runtime import open_session
from edgekd.stages.export import ExportConfig, Int8Inputs, export
from edgekd.targets import load_target
from tests.helpers import PREPROCESSING, SIZE, trained_like


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((64, 3, SIZE, SIZE), dtype=np.float32)


def run(artifact, images, **options) -> np.ndarray:
    return open_session(artifact.runtime, artifact.path, 2, **options).run(images)


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small", "shufflenet_v2_x0_5"])
def test_fp32_parity_torch_onnxruntime_openvino(name, images, tmp_path):
    model = trained_like(name)
    with torch.no_grad():
        expected = model(torch.from_numpy(images)).numpy()
    artifacts = export(ExportConfig(), {"fp32": model}, PREPROCESSING, tmp_path)
    assert [a.name for a in artifacts] == ["onnx-fp32", "openvino-fp32"]
    for artifact in artifacts:
        got = run(artifact, images)
        np.testing.assert_allclose(got, expected, atol=1e-3, rtol=1e-3)
        assert (got.argmax(1) == expected.argmax(1)).all()


def test_bn_folding_keeps_outputs(images):
    model = trained_like("mobilenet_v2")
    x = torch.from_numpy(images)
    with torch.no_grad():
        before = model(x)
        after = fold_batchnorm(model)(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)


def test_int8_export_is_integer_in_both_runtimes_and_matches_fake_quant(images, tmp_path):
    model = trained_like("mobilenet_v2")
    calibration = [torch.randn(8, 3, SIZE, SIZE) for _ in range(4)]
    quantized = qdq_export_mode(insert_fake_quant(model, load_target("x86").int8, calibration)).eval()
    with torch.no_grad():
        expected = quantized(torch.from_numpy(images)).numpy()
    int8 = Int8Inputs(torch.cat(calibration).numpy(), load_target("x86").int8)
    artifacts = export(ExportConfig(), {"nncf": quantized}, PREPROCESSING, tmp_path, int8)
    onnx_int8, ov_int8 = artifacts
    ops = {n.op_type for n in onnx.load(onnx_int8.path).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and "BatchNormalization" not in ops
    # QDQ semantics, evaluated in float: matches the fake-quantized PyTorch model closely
    reference = run(onnx_int8, images, reference=True)
    np.testing.assert_allclose(reference, expected, atol=0.05 * np.abs(expected).max())
    for artifact in artifacts:
        session = open_session(artifact.runtime, artifact.path, 2)
        got = session.run(images)
        assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.9
        executed = session.executed_precision()
        assert executed["precision"] == "int8", executed  # every convolution ran in int8


def test_int8_squeeze_excitation_convolutions_run_in_int8(tmp_path):
    """NNCF's default keeps SE blocks in float; OpenVINO then ran 18 of mobilenet_v3_small's 52
    convolutions in fp32."""
    calibration = [torch.randn(8, 3, SIZE, SIZE) for _ in range(4)]
    flavour = load_target("x86").int8
    quantized = qdq_export_mode(insert_fake_quant(trained_like("mobilenet_v3_small"), flavour, calibration)).eval()
    calibration = torch.cat(calibration).numpy()
    for artifact in export(
        ExportConfig(), {"nncf": quantized}, PREPROCESSING, tmp_path, Int8Inputs(calibration, flavour)
    ):
        executed = open_session(artifact.runtime, artifact.path, 2).executed_precision()
        assert executed["int8_convs"] == executed["convs"] == 52, (artifact.runtime, executed)


def test_metadata_is_embedded_in_onnx_and_openvino(tmp_path):
    artifacts = export(ExportConfig(), {"fp32": trained_like("mobilenet_v3_small")}, PREPROCESSING, tmp_path)
    props = {p.key: p.value for p in onnx.load(artifacts[0].path).metadata_props}
    assert json.loads(props["classes"]) == ["cat", "dog", "emu"]
    assert json.loads(props["mean"]) == [0.5, 0.5, 0.5]
    assert props["channel_order"] == '"RGB"' and props["precision"] == "fp32"
    model = ov.Core().read_model(artifacts[1].path)
    assert json.loads(model.get_rt_info(["model_info", "classes"]).astype(str)) == ["cat", "dog", "emu"]
    assert json.loads(model.get_rt_info(["model_info", "input_size"]).astype(str)) == [SIZE, SIZE]


def test_export_writes_no_temporary_files(tmp_path):
    export(ExportConfig(), {"fp32": trained_like("mobilenet_v3_small")}, PREPROCESSING, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student_fp32.onnx", "student_fp32_openvino"]
