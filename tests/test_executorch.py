"""The executorch format: a .pte program delegated to XNNPACK, its int8 weights from PT2E QAT
with the XNNPACK quantizer, run by ExecuTorch's own Python runtime."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from edgekd.formats import artifact_of
from edgekd.runtime import open_session
from edgekd.stages.export import ExportConfig, export
from tests.test_export import PREPROCESSING, SIZE, trained_like

pytest.importorskip("executorch.runtime", reason="pip install 'edgekd[executorch]'")


def test_fp32_program_computes_the_model_and_carries_the_metadata(tmp_path):
    model = trained_like("mobilenet_v3_small")
    (artifact,) = export(ExportConfig(formats=["executorch"]), {"fp32": model}, PREPROCESSING, tmp_path)
    assert artifact.name == "executorch-fp32" and artifact.path.endswith("student_fp32.pte")
    assert artifact_of(artifact.path).format == "executorch" and artifact.quantizer is None
    session = open_session("executorch", artifact.path, 2)
    images = torch.randn(5, 3, SIZE, SIZE)
    with torch.no_grad():
        expected = model(images).numpy()
    assert abs(session.run(images.numpy()) - expected).max() < 1e-4
    assert session.input_shape() == [1, 3, SIZE, SIZE]
    meta = session.metadata()
    assert json.loads(meta["classes"]) == PREPROCESSING["classes"] and meta["precision"] == "fp32"


@pytest.mark.slow
def test_build_trains_one_qat_per_backend_and_says_which_artifact_comes_from_which(tmp_path):
    from tests.conftest import TINY_CONFIG

    config = tmp_path / "tiny.toml"
    config.write_text(
        TINY_CONFIG.format(student="mobilenet_v3_small") + '\n[export]\nformats = ["onnx", "executorch"]\n'
    )
    out = tmp_path / "out"
    command = [sys.executable, "-m", "edgekd", "build", "--target", "x86", "--config", str(config), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "threadpool" not in done.stderr and "cpuinfo" not in done.stderr  # ExecuTorch's C++ logs kept out
    report = json.loads((out / "report.json").read_text())
    artifacts = {a["name"]: a for a in report["artifacts"]}
    assert set(artifacts) == {"onnx-fp32", "executorch-fp32", "onnx-int8", "executorch-int8"}
    assert artifacts["onnx-int8"]["quantizer"] == "nncf" and artifacts["executorch-int8"]["quantizer"] == "xnnpack"
    assert set(report["student"]["val_accuracy_int8_by_quantizer"]) == {"nncf", "xnnpack"}
    assert len(list((out / "work").glob("quantize-xnnpack-*/student_int8_qat.pt"))) == 1
    for artifact in artifacts.values():
        assert artifact["verification"]["passed"], artifact
    host = report["tables"][0]
    assert all(row["status"] == "ok" and row["p50_ms"] > 0 for row in host["rows"]), host["rows"]
    int8 = open_session("executorch", artifacts["executorch-int8"]["path"], 2).metadata()
    assert json.loads(int8["int8"])["activations"] == "s8"  # XNNPACK's scheme, not the target's u8 for ONNX
    assert "Int8 from (edgekd.quantizers): nncf QAT" in (out / "report.md").read_text()
    # the report's ExecuTorch snippet runs as written and agrees with `edgekd predict` on that program
    snippet = report["snippet"]["executorch"]
    assert f"```python\n{snippet.rstrip()}\n```" in (out / "report.md").read_text()
    pixels = np.random.default_rng(5).integers(0, 256, (30, 45, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(out / "image.jpg")
    program = artifacts[f"executorch-{report['snippet']['precision']}"]["path"]
    predicted = subprocess.run([sys.executable, "-m", "edgekd", "predict", program, str(out / "image.jpg"),
                                "--top-k", "1", "--json"], capture_output=True, text=True)  # fmt: skip
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    top = json.loads(predicted.stdout)[0]["top"][0]
    ran = subprocess.run([sys.executable, "-c", snippet], cwd=out, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr[-2000:]
    name, probability = eval(ran.stdout.strip().splitlines()[-1])  # the snippet prints (class, probability)
    assert name == top["class"] and probability == pytest.approx(top["probability"], abs=1e-4)


def test_a_format_without_its_extra_stops_when_the_config_is_read(tmp_path, tiny_config):
    # an executorch package that fails to import stands for one that is not installed
    (tmp_path / "blocked" / "executorch").mkdir(parents=True)
    (tmp_path / "blocked" / "executorch" / "__init__.py").write_text("raise ImportError('not installed')\n")
    command = [sys.executable, "-m", "edgekd", "build", "--target", "x86", "--config", str(tiny_config),
               "--set", 'export.formats=["onnx", "executorch"]', "--out", str(tmp_path / "out")]  # fmt: skip
    env = os.environ | {"PYTHONPATH": str(tmp_path / "blocked")}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "export.formats: executorch needs executorch: pip install 'edgekd[executorch]'" in done.stderr
    assert not (tmp_path / "out" / "work").exists()
