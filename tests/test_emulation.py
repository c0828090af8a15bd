"""ARM emulation (opt-in): int8 artifacts on onnxruntime's aarch64 kernels under qemu. Runs when
~/.cache/edgekd/arm-rootfs is built, or with EDGEKD_TEST_QEMU=1 (builds one: apt and pip
downloads, about a minute); skipped otherwise, since it needs the network and qemu."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from edgekd.emulation import arm_logits, build_rootfs, qemu
from edgekd.runtime import open_session
from edgekd.stages.export import ExportConfig, export
from edgekd.stages.quantize import insert_fake_quant, qdq_export_mode
from edgekd.targets import load_target
from tests.test_export import PREPROCESSING, SIZE, trained_like

BUILT = Path.home() / ".cache" / "edgekd" / "arm-rootfs"


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory) -> Path:
    if (BUILT / ".complete").is_file():
        return BUILT
    if os.environ.get("EDGEKD_TEST_QEMU") != "1":
        pytest.skip("opt-in: build ~/.cache/edgekd/arm-rootfs first, or set EDGEKD_TEST_QEMU=1")
    return build_rootfs(tmp_path_factory.mktemp("qemu") / "arm-rootfs")


def test_int8_artifact_on_arm_kernels_matches_its_qdq_semantics(rootfs, tmp_path):
    python = rootfs / "usr" / "bin" / "python3.11"
    arch = subprocess.run(
        [qemu(), "-L", str(rootfs), str(python), "-c", "import platform; print(platform.machine())"],
        capture_output=True,
        text=True,
        env={"PYTHONHOME": "/usr"},
    )
    assert arch.stdout.strip() == "aarch64"

    model = trained_like("mobilenet_v2")
    calibration = [torch.randn(8, 3, SIZE, SIZE) for _ in range(4)]
    quantized = qdq_export_mode(insert_fake_quant(model, load_target("arm").int8, calibration)).eval()
    flavour, calibration = load_target("arm").int8.model_dump(), torch.cat(calibration).numpy()
    (artifact,) = export(
        ExportConfig(formats=["onnx"]), {"int8": quantized}, PREPROCESSING, tmp_path, calibration, flavour
    )
    images = np.random.default_rng(2).standard_normal((32, 3, SIZE, SIZE), dtype=np.float32)
    on_arm = arm_logits(artifact.path, images, rootfs)
    reference = open_session("onnxruntime", artifact.path, 2, reference=True).run(images)
    assert on_arm.shape == reference.shape
    np.testing.assert_allclose(on_arm, reference, atol=0.1 * np.abs(reference).max())
    assert (on_arm.argmax(1) == reference.argmax(1)).mean() >= 0.9
