"""The `cuda` target without a GPU: every row is "not run" with its reason, never numbers; the
PyTorch program it runs on GPUs is checked here on the CPU, through the same measuring path."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from edgekd.runtime import open_session
from edgekd.stages.bench import BenchConfig, bench
from edgekd.stages.export import ExportConfig, export
from edgekd.targets import load_target
from edgekd.targets.gpu_bench import cuda_device
from edgekd.targets.kinds import place
from tests.helpers import PREPROCESSING, SIZE, trained_like


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = trained_like("mobilenet_v2")
    out = tmp_path_factory.mktemp("gpu")
    return model, export(ExportConfig(formats=["onnx", "torch"]), {"fp32": model}, PREPROCESSING, out)


def test_torch_program_matches_the_model_and_carries_metadata(exported):
    model, artifacts = exported
    program = next(a for a in artifacts if a.format == "torch")
    x = np.random.default_rng(0).standard_normal((5, 3, SIZE, SIZE), dtype=np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(open_session("torch", program.path, 2).run(x), expected, atol=1e-4, rtol=1e-4)
    extra = {"edgekd.json": ""}
    torch.export.load(program.path, extra_files=extra)
    assert json.loads(json.loads(extra["edgekd.json"])["classes"]) == PREPROCESSING["classes"]


def test_throughput_batch_and_session_options_reach_the_runtime(exported):
    _, artifacts = exported
    program = next(a for a in artifacts if a.format == "torch")
    command = [sys.executable, "-m", "edgekd.runtime", program.path, "--runtime", "torch", "--threads", "1"]
    command += ["--warmup", "1", "--runs", "5", "--batch", "8", '--option=precision="fp32"']
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["batch"] == 8 and result["options"] == {"precision": "fp32"}
    assert result["fps"] == pytest.approx(8 * 1000 / result["mean_ms"], rel=0.01)


@pytest.mark.skipif(cuda_device() is not None, reason="this host has a GPU: the rows run (benchmarks/gpu_latency.py)")
def test_cuda_target_without_gpu_reports_not_run_with_reasons(exported):
    _, artifacts = exported
    rows = bench(BenchConfig(warmup=1, runs=2), artifacts, place(load_target("cuda")))
    by_runtime = {r.runtime: r for r in rows}
    assert set(by_runtime) == {"onnxruntime-cuda", "tensorrt", "torch-cuda"}
    for row in rows:
        assert row.status == "not run" and "p50_ms" not in row.model_fields_set
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        assert "onnxruntime-gpu is not installed" in by_runtime["onnxruntime-cuda"].reason
        assert "onnxruntime-gpu is not installed" in by_runtime["tensorrt"].reason
    assert by_runtime["torch-cuda"].reason == "no CUDA device on this host"
