"""The formats mobile and embedded apps ship: ExecuTorch (.pte delegated to XNNPACK), LiteRT
(.tflite) and ncnn, each run by its own runtime; their int8 weights come from one PT2E QAT with
the XNNPACK quantizer."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from edgekd.formats import artifact_of
from edgekd.runtime import open_session
from edgekd.stages.distill import load_student
from edgekd.stages.export import ExportConfig, export
from edgekd.stages.report import load_report
from tests.helpers import MOBILE_FORMATS, PREPROCESSING, SIZE, built_artifacts, checkpoint, cli

for module, extra in MOBILE_FORMATS.values():
    pytest.importorskip(module, reason=f"pip install 'edgekd[{extra}]'")


@pytest.mark.slow
@pytest.mark.parametrize(
    "fmt, opens, runtime", [("executorch", "student_fp32.pte", "executorch"),
                            ("tflite", "student_fp32.tflite", "litert"),
                            ("ncnn", "student_fp32_ncnn/model.ncnn.param", "ncnn")],
)  # fmt: skip
def test_fp32_artifact_computes_the_model_and_carries_the_metadata(mobile_build, fmt, opens, runtime):
    _, out, _ = mobile_build
    artifact = built_artifacts(out)[f"{fmt}-fp32"]
    assert artifact.path == str(out / "artifacts" / opens) and artifact.quantizer is None
    assert artifact_of(artifact.path).format == fmt and artifact.runtime == runtime
    (student,) = (out / "work").glob("distill-*/student_fp32.pt")
    model, _ = load_student(student)
    session = open_session(runtime, artifact.path, 2)
    images = torch.randn(5, 3, SIZE, SIZE)
    with torch.no_grad():
        expected = model(images).numpy()
    assert abs(session.run(images.numpy()) - expected).max() < 1e-4
    assert session.input_shape() == [1, 3, SIZE, SIZE]
    meta = session.metadata()
    classes = load_report(out).data.classes
    assert json.loads(meta["classes"]) == classes and len(classes) == 10 and meta["precision"] == "fp32"


def test_the_kotlin_snippet_carries_the_tflite_artifacts_own_preprocessing(tmp_path):
    import re

    from edgekd.formats import read_preprocessing
    from edgekd.formats.litert_android import kotlin_litert

    preprocessing = PREPROCESSING | {"classes": ['say "hi"', "$5 bill", "emu"], "layout": "NHWC",
                                     "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                                     "channel_order": "BGR"}  # fmt: skip
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * SIZE * SIZE, 3))
    (artifact,) = export(ExportConfig(formats=["tflite"]), {"fp32": model}, preprocessing, tmp_path)
    code = kotlin_litert(read_preprocessing(tmp_path / "student_fp32.tflite"), "student.tflite")
    assert 'context.assets.openFd("student.tflite")' in code
    assert re.search(r"const val WIDTH = (\d+)", code)[1] == str(SIZE)
    assert float(re.search(r"const val SCALE = (\S+)f", code)[1]) == 1 / 255

    def floats(name):
        return [float(v.rstrip("f")) for v in re.search(rf"val {name} = floatArrayOf\((.*)\)", code)[1].split(", ")]

    assert floats("MEAN") == preprocessing["mean"] and floats("STD") == preprocessing["std"]
    listed = re.search(r"val CLASSES = listOf\(\n(.*?),\n\)", code, re.S)[1]
    # Kotlin's string escapes are JSON's, and `$` would start a template
    assert [json.loads(line.strip().replace("\\$", "$")) for line in listed.split(",\n")] == preprocessing["classes"]
    assert '"\\$5 bill"' in listed
    assert "x[i * 3 + c] = (rgb[c] * SCALE - MEAN[c]) / STD[c]  // NHWC" in code
    assert "val rgb = intArrayOf(p and 0xFF, p shr 8 and 0xFF, p shr 16 and 0xFF)  // the model takes BGR" in code


@pytest.mark.slow
def test_ncnn_int8_runs_the_qat_graphs_int8_convolutions(mobile_build):
    from edgekd.quantizers.xnnpack import XnnpackBackend

    _, out, _ = mobile_build
    artifacts = built_artifacts(out)
    fp32, int8 = artifacts["ncnn-fp32"], artifacts["ncnn-int8"]
    assert int8.path == str(out / "artifacts/student_int8_ncnn/model.ncnn.param") and int8.quantizer == "xnnpack"
    assert int8.size_mb < 0.3 * fp32.size_mb  # int8 weights, as ncnn2int8 stores them
    session = open_session("ncnn", int8.path, 2)
    ran = session.executed_precision()
    assert ran["precision"] == "int8" and ran["int8_convs"] == ran["convs"] == 54  # SE blocks' included
    (trained,) = (out / "work").glob("quantize-xnnpack-*/student_int8_qat.pt")
    qat, _ = XnnpackBackend().load(trained)
    (student,) = (out / "work").glob("distill-*/student_fp32.pt")
    model, _ = load_student(student)
    images = torch.randn(64, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        expected, float_logits = qat(images).numpy(), model(images).numpy()
    logits = session.run(images.numpy())
    # close to the QAT graph (ncnn's activation scales are symmetric, XNNPACK's not), and not the float model
    assert abs(logits - expected).mean() < 0.05 * abs(expected).mean()
    assert abs(logits - float_logits).mean() > 1e-3 * abs(float_logits).mean()
    assert (logits.argmax(1) == expected.argmax(1)).mean() >= 0.95
    assert session.metadata()["precision"] == "int8"


@pytest.mark.slow
def test_build_trains_one_qat_per_backend_and_says_which_artifact_comes_from_which(mobile_build):
    _, out, done = mobile_build
    # the native libraries' own logs are kept out of edgekd's output
    for chatter in ("threadpool", "cpuinfo", "XNNPACK delegate", "pass_level", "LiteRT-Torch Convert"):
        assert chatter not in done.stderr + done.stdout, chatter
    report = json.loads((out / "report.json").read_text())
    artifacts = {a["name"]: a for a in report["artifacts"]}
    assert set(artifacts) == {
        *(f"{f}-{p}" for f in ("onnx", "openvino", "executorch", "tflite", "ncnn") for p in ("fp32", "int8")),
    }
    assert artifacts["onnx-int8"]["quantizer"] == artifacts["openvino-int8"]["quantizer"] == "nncf"
    assert {artifacts[f"{f}-int8"]["quantizer"] for f in ("executorch", "tflite", "ncnn")} == {"xnnpack"}
    assert set(report["student"]["val_accuracy_int8_by_quantizer"]) == {"nncf", "xnnpack"}
    assert len(list((out / "work").glob("quantize-xnnpack-*/student_int8_qat.pt"))) == 1  # one QAT serves both
    for artifact in artifacts.values():
        assert artifact["verification"]["passed"], artifact
    host = report["tables"][0]
    assert all(row["status"] == "ok" and row["p50_ms"] > 0 for row in host["rows"]), host["rows"]
    for name, runtime in (("executorch-int8", "executorch"), ("tflite-int8", "litert"), ("ncnn-int8", "ncnn")):
        session = open_session(runtime, artifacts[name]["path"], 2)
        assert json.loads(session.metadata()["int8"])["activations"] == "s8"  # XNNPACK's scheme, not ONNX's u8
    for name, runtime in (("tflite-int8", "litert"), ("ncnn-int8", "ncnn")):
        assert open_session(runtime, artifacts[name]["path"], 2).executed_precision()["precision"] == "int8"
    assert "Int8 from (edgekd.quantizers): nncf QAT" in (out / "report.md").read_text()
    # each runtime's snippet runs as written and agrees with `edgekd predict` on its artifact
    pixels = np.random.default_rng(5).integers(0, 256, (30, 45, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(out / "image.jpg")
    precision = report["snippet"]["precision"]
    for fmt, runtime in (("executorch", "executorch"), ("tflite", "litert"), ("ncnn", "ncnn")):
        if f"{fmt}-{precision}" not in artifacts:
            continue
        snippet = report["snippet"][runtime]
        assert f"```python\n{snippet.rstrip()}\n```" in (out / "report.md").read_text()
        path = artifacts[f"{fmt}-{precision}"]["path"]
        predicted = cli("predict", path, str(out / "image.jpg"), "--top-k", "1", "--json")
        assert predicted.returncode == 0, predicted.stderr[-2000:]
        top = json.loads(predicted.stdout)[0]["top"][0]
        ran = subprocess.run([sys.executable, "-c", snippet], cwd=out, capture_output=True, text=True)
        assert ran.returncode == 0, ran.stderr[-2000:]
        name, probability = eval(ran.stdout.strip().splitlines()[-1])  # the snippet prints (class, probability)
        assert name == top["class"] and probability == pytest.approx(top["probability"], abs=1e-4), fmt


@pytest.mark.slow
def test_the_step_by_step_commands_are_the_builds_stages_and_export_each_backends_int8(tmp_path, mobile_build):
    config, built_out, _ = mobile_build
    out = tmp_path / "out"
    shutil.copytree(built_out / "work", out / "work")  # what the build trained (training itself: test_build_spec)
    distilled = cli("distill", "--config", str(config), "--out", str(out))
    assert distilled.returncode == 0, distilled.stderr[-2000:]
    student = checkpoint(distilled, "distill")
    assert student.parent.parent == out / "work" and student.is_file()  # the build's own distill stage
    written = student.stat().st_mtime_ns
    quantized = cli("quantize", "--target", "x86", "--quantizer", "xnnpack", "--config", str(config),
                    "--out", str(out))  # fmt: skip
    assert quantized.returncode == 0, quantized.stderr[-2000:]
    assert checkpoint(quantized, "distill") == student and student.stat().st_mtime_ns == written  # reused
    qat = checkpoint(quantized, "quantize-xnnpack")
    assert qat.parent.name.startswith("quantize-xnnpack-") and qat.is_file()
    assert (qat.parent.name, qat.read_bytes()) in [  # the build's XNNPACK QAT, reused
        (p.parent.name, p.read_bytes()) for p in (built_out / "work").glob("quantize-xnnpack-*/student_int8_qat.pt")
    ]
    formats = 'export.formats=["onnx", "ncnn"]'
    exported = cli("export", str(student), str(qat), "--set", formats, "--out", str(out / "artifacts"))
    assert exported.returncode == 0, exported.stderr[-2000:]
    names = [line.split(":")[0] for line in exported.stdout.splitlines()]
    assert names == ["onnx-fp32", "ncnn-fp32", "ncnn-int8"]
    # the ONNX int8 comes from NNCF's QAT, which was not given: said, not silently skipped
    assert "onnx-int8 not exported: it needs a QAT checkpoint from `edgekd quantize --quantizer nncf`" in (
        exported.stderr
    )
    session = open_session("ncnn", str(out / "artifacts" / "student_int8_ncnn" / "model.ncnn.param"), 2)
    assert session.executed_precision()["precision"] == "int8"
    assert json.loads(session.metadata()["int8"]) == {  # the scheme XNNPACK trained, with no NNCF QAT in the run
        "activations": "s8", "weights": "s8", "per_channel": True, "reduce_range": False,
    }  # fmt: skip
    twice = cli("export", str(qat), str(qat), "--out", str(out / "twice"))
    assert twice.returncode == 2 and "a second xnnpack checkpoint" in twice.stderr


@pytest.mark.parametrize(
    "fmt, module, extra", [("executorch", "executorch", "executorch"), ("tflite", "ai_edge_litert", "tflite"),
                           ("ncnn", "ncnn", "ncnn")],
)  # fmt: skip
def test_a_format_without_its_extra_stops_when_the_config_is_read(tmp_path, tiny_config, fmt, module, extra):
    # a package that fails to import stands for one that is not installed
    (tmp_path / "blocked" / module).mkdir(parents=True)
    (tmp_path / "blocked" / module / "__init__.py").write_text("raise ImportError('not installed')\n")
    command = [sys.executable, "-m", "edgekd", "build", "--target", "x86", "--config", str(tiny_config),
               "--set", f'export.formats=["onnx", "{fmt}"]', "--out", str(tmp_path / "out")]  # fmt: skip
    env = os.environ | {"PYTHONPATH": str(tmp_path / "blocked")}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert f"export.formats: {fmt} needs " in done.stderr and f"pip install 'edgekd[{extra}]'" in done.stderr
    assert not (tmp_path / "out" / "work").exists()


def test_a_format_whose_qat_is_missing_stops_when_the_config_is_read(tmp_path, tiny_config):
    (tmp_path / "blocked" / "executorch").mkdir(parents=True)
    (tmp_path / "blocked" / "executorch" / "__init__.py").write_text("raise ImportError('not installed')\n")
    command = [sys.executable, "-m", "edgekd", "build", "--target", "x86", "--config", str(tiny_config),
               "--set", 'export.formats=["ncnn"]', "--out", str(tmp_path / "out")]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, env=os.environ | {"PYTHONPATH": str(tmp_path / "blocked")}
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "export.formats: ncnn int8: QAT with PT2E with the XNNPACK quantizer needs executorch" in done.stderr
    assert not (tmp_path / "out" / "work").exists()
