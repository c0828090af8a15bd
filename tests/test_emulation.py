"""ARM's kernels under qemu user mode: int8 ONNX and OpenVINO artifacts run by the aarch64
onnxruntime and OpenVINO in an arm64 root file system built from Debian's archive (downloads,
about 15 s, once per test session). Skipped, with the fix, where qemu user mode is missing;
CI installs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgekd import emulation
from edgekd.errors import EdgekdError
from edgekd.quantizers.nncf import insert_fake_quant, qdq_export_mode
from edgekd.runtime import open_session, runtime_version
from edgekd.stages.export import ExportConfig, Int8Inputs, export
from edgekd.targets import load_target
from tests.helpers import PREPROCESSING, SIZE, built_artifacts, trained_like, write_config

pytestmark = pytest.mark.slow


def int8_for_arm(model, folder):
    """The model fake-quantized in the arm target's int8 scheme, and its int8 ONNX and OpenVINO artifacts."""
    calibration = [torch.rand(8, 3, SIZE, SIZE) * 2 - 1 for _ in range(4)]
    flavour = load_target("arm").int8
    quantized = qdq_export_mode(insert_fake_quant(model, flavour, calibration)).eval()
    artifacts = export(
        ExportConfig(formats=["onnx", "openvino"]),
        {"nncf": quantized},
        PREPROCESSING,
        folder,
        Int8Inputs(torch.cat(calibration).numpy(), flavour),
    )
    return quantized, artifacts


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
    _, (onnx_file, ir) = int8_for_arm(trained_like("mobilenet_v2"), tmp_path)
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


def test_forced_emulation_without_qemu_stops_the_build_before_training(monkeypatch, tmp_path):
    config = write_config(tmp_path / "tiny.toml", {"verify.arm_emulation": True})
    bare = tmp_path / "bin"  # a machine without qemu: nothing on PATH
    bare.mkdir()
    command = [sys.executable, "-m", "edgekd", "build", "--target", "arm", "--config", str(config)]
    done = subprocess.run(
        [*command, "--out", str(tmp_path / "out")], capture_output=True, text=True, env={"PATH": str(bare)}
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "arm_emulation = true but qemu user mode is not installed" in done.stderr
    assert "data:" not in done.stderr and not (tmp_path / "out" / "work").exists()  # nothing trained


class Saturating(torch.nn.Module):
    """Flatten -> Linear, 3 classes: class 0 weighs every input 1.0, class 1 every other input
    1.9. On bright images class 0 wins by 5%; an AVX2 u8 x s8 multiply-add (vpmaddubsw) clips
    class 0's pairs of products (255 x 127 twice > 32767) and not class 1's (one is zero), so
    AVX2 int8 kernels pick class 1 where ARM's dot products, and VNNI's, pick class 0."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3 * SIZE * SIZE, 3, bias=False)
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.weight[0] = 1.0
            self.linear.weight[1, ::2] = 1.9
            self.linear.weight[2] = -1.0

    def forward(self, x):
        return self.linear(x.flatten(1))


def test_a_disagreement_on_the_hosts_int8_kernels_only_is_a_note_not_a_failure(rootfs, tmp_path):
    """On every x86-64 host, VNNI or not: qemu-x86_64 -cpu Haswell hides VNNI, so the host's
    onnxruntime and OpenVINO take their AVX2 int8 kernels and disagree with the artifact's
    PyTorch model; the arm verification runs the same artifacts on ARM's kernels, agrees, and
    passes, with the host's figure kept as a note."""
    x86 = shutil.which("qemu-x86_64-static") or shutil.which("qemu-x86_64")
    if x86 is None:
        pytest.skip("qemu-x86_64 is not installed: apt-get install qemu-user-static")
    torch.manual_seed(0)
    quantized, artifacts = int8_for_arm(Saturating().eval(), tmp_path)
    images = np.random.default_rng(0).uniform(0.8, 1.0, (32, 3, SIZE, SIZE)).astype(np.float32)
    with torch.no_grad():
        reference = quantized(torch.from_numpy(images)).numpy()
    assert (reference.argmax(1) == 0).all()  # the artifact's own semantics: class 0 everywhere
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "labels.npy", np.zeros(len(images), np.int64))
    np.save(tmp_path / "reference.npy", reference)
    (tmp_path / "artifacts.json").write_text(json.dumps([a.to_dict() for a in artifacts]))
    script = Path(__file__).with_name("avx2_host.py")
    done = subprocess.run(
        [x86, "-cpu", "Haswell", sys.executable, str(script), str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[1],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    checks = json.loads(done.stdout.strip().splitlines()[-1])
    assert [c["artifact"] for c in checks] == ["onnx-int8", "openvino-int8"]
    for check in checks:
        assert check["host_agreement"] < check["min_agreement"], check  # provoked: AVX2 kernels disagree
        assert check["method"] == "emulated" and check["agreement"] == 1.0, check  # ARM's kernels agree
        assert check["passed"] and "property of this host's int8 kernels" in check["note"], check


def test_executorch_programs_run_on_executorchs_aarch64_runtime(rootfs, mobile_build):
    """The session's build's ExecuTorch programs (fp32, and int8 from the XNNPACK QAT), on
    ExecuTorch's aarch64 runtime under qemu and on this host's."""
    _, out, _ = mobile_build
    artifacts = [a for a in built_artifacts(out).values() if a.format == "executorch"]
    assert [a.name for a in artifacts] == ["executorch-fp32", "executorch-int8"]
    images = np.random.default_rng(3).standard_normal((8, 3, SIZE, SIZE)).astype(np.float32)
    on_arm = emulation.arm_logits([(a.runtime, a.path) for a in artifacts], images, rootfs)
    for artifact, logits in zip(artifacts, on_arm):
        host = open_session("executorch", artifact.path, 2).run(images)
        # XNNPACK's ARM kernels: float sums in another order; int8 outputs at most a rounding step apart
        tolerance = 1e-4 if artifact.precision == "fp32" else 0.05
        assert np.abs(logits - host).max() <= tolerance * max(1.0, np.abs(host).max()), artifact.name
        assert (logits.argmax(1) == host.argmax(1)).all(), artifact.name
    assert emulation.description("executorch").startswith("executorch 1.0.1 aarch64")
