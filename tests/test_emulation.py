"""ARM's kernels under qemu user mode: int8 ONNX and OpenVINO artifacts run by the aarch64
onnxruntime and OpenVINO in an arm64 root file system built from Debian's archive (downloads,
about 15 s, once per test session). Skipped, with the fix, where qemu user mode is missing;
CI installs it."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import torch

from edgekd import emulation
from edgekd.errors import EdgekdError
from edgekd.runtime import open_session, runtime_version
from edgekd.stages.export import ExportConfig, export
from edgekd.stages.quantize import insert_fake_quant, qdq_export_mode
from edgekd.targets import load_target
from tests.test_export import PREPROCESSING, SIZE, trained_like

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rootfs():
    if emulation.qemu() is None:
        pytest.skip("qemu user mode is not installed: apt-get install qemu-user-static")
    return emulation.build_rootfs()


def test_rootfs_runs_an_arm64_python_with_both_runtimes(rootfs):
    python = rootfs / "usr" / "bin" / "python3.11"
    code = "import platform, onnxruntime, openvino; print(platform.machine(), onnxruntime.__version__)"
    done = subprocess.run(
        [emulation.qemu(), "-cpu", emulation.CPU, "-L", str(rootfs), str(python), "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONHOME": "/usr", "PYTHONPATH": "/opt/edgekd-site"},
    )
    assert done.stdout.split() == ["aarch64", runtime_version("onnxruntime")], done.stderr


def test_int8_artifacts_on_arm_kernels_follow_their_qdq_semantics(rootfs, tmp_path):
    model = trained_like("mobilenet_v2")
    calibration = [torch.rand(8, 3, SIZE, SIZE) * 2 - 1 for _ in range(4)]
    flavour = load_target("arm").int8
    quantized = qdq_export_mode(insert_fake_quant(model, flavour, calibration)).eval()
    onnx_file, ir = export(
        ExportConfig(formats=["onnx", "openvino"]),
        {"int8": quantized},
        PREPROCESSING,
        tmp_path,
        torch.cat(calibration).numpy(),
        flavour.model_dump(),
    )
    # images inside the calibrated range: what the artifact sees in use
    images = np.random.default_rng(2).uniform(-1, 1, (48, 3, SIZE, SIZE)).astype(np.float32)
    on_arm = emulation.arm_logits([(onnx_file.runtime, onnx_file.path), (ir.runtime, ir.path)], images, rootfs)
    reference = open_session("onnxruntime", onnx_file.path, 2, reference=True).run(images)
    for logits in on_arm:
        assert logits.shape == reference.shape
        assert (logits.argmax(1) == reference.argmax(1)).mean() >= 0.9
    np.testing.assert_allclose(on_arm[0], reference, atol=0.1 * np.abs(reference).max())


def test_forced_emulation_without_qemu_fails_with_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # a machine without qemu
    assert "apt-get install qemu-user-static" in emulation.unavailable("auto")
    with pytest.raises(EdgekdError, match="arm_emulation = true but qemu user mode is not installed"):
        emulation.unavailable(True)
    assert "off" in emulation.unavailable(False)
