"""Layers kept in float: NNCF leaves the named modules' convolutions unquantized, and the exported
int8 artifact runs exactly those in float kernels (OpenVINO's executed graph says which kernel
ran each layer)."""

from __future__ import annotations

import numpy as np
import torch

from edgekd.quantizers.nncf import insert_fake_quant, qdq_export_mode
from edgekd.stages.export import ExportConfig, export
from edgekd.targets import load_target
from tests.helpers import PREPROCESSING, SIZE, trained_like


def executed_kernels(path: str) -> dict[str, list[str]]:
    """OpenVINO's kernel for each executed convolution, by layer type."""
    import openvino as ov

    config = {"INFERENCE_NUM_THREADS": 1, "PERF_COUNT": True, "INFERENCE_PRECISION_HINT": "f32"}
    request = ov.Core().compile_model(path, "CPU", config).create_infer_request()
    request.infer({0: np.zeros((1, 3, SIZE, SIZE), np.float32)})
    kernels: dict[str, list[str]] = {}
    for layer in request.get_profiling_info():
        if layer.status == layer.Status.EXECUTED and layer.node_type.endswith("Convolution"):
            kernels.setdefault(layer.node_type, []).append(layer.exec_type.lower())
    return kernels


def int8(kernel: str) -> bool:
    """An int8 kernel: OpenVINO names its kernels after their input precision (`brgconv_avx512_1x1_I8`,
    `jit_avx2_U8`; float: `..._f32`)."""
    return kernel.endswith(("_i8", "_u8"))


def test_the_named_layers_stay_float_in_the_int8_artifact_and_the_rest_int8(tmp_path):
    model = trained_like("mobilenet_v3_small")
    depthwise = [name for name, m in model.named_modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert len(depthwise) == 11
    calibration = [torch.randn(8, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    flavour = load_target("x86").int8
    placed = qdq_export_mode(insert_fake_quant(model, flavour, calibration, keep_float=depthwise)).eval()
    (artifact,) = export(ExportConfig(formats=["openvino"]), {"nncf": placed}, PREPROCESSING, tmp_path)
    kernels = executed_kernels(artifact.path)
    # the 11 depthwise convolutions run float kernels; the 41 others (1x1, the stem, the SE blocks') int8
    assert len(kernels["GroupConvolution"]) == 11 and not any(map(int8, kernels["GroupConvolution"])), kernels
    assert len(kernels["Convolution"]) == 41 and all(map(int8, kernels["Convolution"])), kernels
    # and without the placement, every one of them runs int8
    everything = qdq_export_mode(insert_fake_quant(model, flavour, calibration)).eval()
    (artifact,) = export(ExportConfig(formats=["openvino"]), {"nncf": everything}, PREPROCESSING, tmp_path / "all")
    assert all(map(int8, executed_kernels(artifact.path)["GroupConvolution"]))
