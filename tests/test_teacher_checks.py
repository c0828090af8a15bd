"""Teachers that cannot teach, caught on the data before any training (edgekd.training.teacher_checks),
and teachers exported with a fixed batch size, run in batches of that size."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from edgekd.reporting.text import summary
from edgekd.training.teacher_checks import LogProbabilities
from edgekd.training.teachers import TeacherConfig, load_teacher
from tests.bad_inputs import bad_input
from tests.helpers import (
    CLASSES,
    FP32_ONNX,
    MeanColourTeacher,
    assert_one_line_error,
    export_teacher,
    report_with_val,
    said,
    tiny_net,
    write_config,
)


def config(tmp_path, check_accuracy: bool = True):
    """The tiny config with ONNX fp32 alone (no QAT) and the accuracy check as given."""
    return write_config(tmp_path / "teacher-checks.toml", FP32_ONNX | {"teacher.check_accuracy": check_accuracy})


def edgekd(command: str, tmp_path, data, teacher, check_accuracy: bool = True) -> subprocess.CompletedProcess:
    """`edgekd COMMAND` in a fresh interpreter, without --quiet: its notes are on stderr."""
    args = [command, "--config", str(config(tmp_path, check_accuracy)), "--data", str(data), "--teacher", str(teacher)]
    args += ["--out", str(tmp_path / "out")] + (["--target", "x86"] if command == "build" else [])
    return subprocess.run([sys.executable, "-m", "edgekd", *args], capture_output=True, text=True)


@pytest.mark.parametrize(
    "suffix, batch, note", [(".pt2", 1, "one image at a time"), (".onnx", 4, "4 images at a time")]
)
@bad_input(
    "models",
    "a .pt2 or ONNX teacher exported with a fixed batch (`torch.export.export(model, (torch.randn(1, 3, H, W),))`)",
    "run in batches of that size (the last one padded), with a note of the cost",
)
def test_a_teacher_with_a_fixed_batch_builds(tmp_path, image_folder, suffix, batch, note):
    teacher = export_teacher(MeanColourTeacher(), tmp_path / f"teacher{suffix}", batch)
    done = edgekd("build", tmp_path, image_folder, teacher)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"exported with a fixed batch of {batch}: it runs {note}" in said(done)
    assert json.loads((tmp_path / "out" / "report.json").read_text())["teacher"]["val_accuracy"] == 1.0


@pytest.mark.parametrize("suffix, batch", [(".pt2", 1), (".pt2", 4), (".onnx", 1), (".onnx", 4)])
def test_a_fixed_batch_teacher_gives_each_image_its_own_logits(tmp_path, suffix, batch):
    model = tiny_net().eval()
    teacher = load_teacher(TeacherConfig(path=export_teacher(model, tmp_path / f"t{suffix}", batch)), 3, 16, CLASSES)
    images = torch.randn(2 * batch + 1, 3, 16, 16)  # the last batch is padded
    with torch.no_grad():
        assert torch.allclose(teacher(images), model(images), atol=1e-5)


@bad_input(
    "models",
    "an ONNX or .pt2 teacher that outputs probabilities (its last layer a softmax)",
    "distilled from their logarithms (valid logits), with a note",
)
def test_a_teacher_that_outputs_probabilities_is_distilled_from_their_logarithms(tmp_path, image_folder):
    teacher = export_teacher(MeanColourTeacher(softmax=True), tmp_path / "softmax.onnx")
    done = edgekd("distill", tmp_path, image_folder, teacher)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "its outputs are probabilities (each row in [0, 1], summing to 1), not logits" in said(done)
    probabilities = torch.tensor([[0.7, 0.3, 0.0]])
    as_logits = LogProbabilities(nn.Identity())(probabilities)
    assert torch.isfinite(as_logits).all() and torch.allclose(as_logits.softmax(1), probabilities)


@bad_input("models", "a teacher whose outputs are NaN", 'refused before training: "outputs NaN or infinity for N of M"')
def test_a_teacher_with_nan_outputs_stops_before_training(tmp_path, image_folder):
    model = tiny_net()
    with torch.no_grad():
        model[-1].bias[1] = float("nan")  # as a diverged training run leaves its weights
    teacher = export_teacher(model, tmp_path / "nan.onnx")
    done = edgekd("build", tmp_path, image_folder, teacher)
    assert_one_line_error(done, f"teacher {teacher} outputs NaN or infinity for 4 of 4 val images", "re-export")
    assert not (tmp_path / "out" / "work").exists()


@bad_input(
    "models",
    "a teacher at or below chance on the val split (wrong class order, mean/std, input size)",
    'refused before training: "at or below chance", names the causes and `teacher.check_accuracy = false`',
)
def test_a_teacher_at_chance_stops_naming_the_usual_causes_and_the_override(tmp_path, image_folder):
    shifted = MeanColourTeacher(order=(1, 2, 0))  # classes in another order
    teacher = export_teacher(shifted, tmp_path / "shifted.pt2", batch=4)
    done = edgekd("build", tmp_path, image_folder, teacher)
    assert_one_line_error(
        done, f"teacher {teacher} scores 0.00% on the 4 val images, at or below chance for 3 classes (33.33%)",
        "class folders in another order", "data.mean / data.std", "teacher.check_accuracy = false",
    )  # fmt: skip
    assert not (tmp_path / "out" / "work").exists()
    done = edgekd("distill", tmp_path, image_folder, teacher, check_accuracy=False)  # the override
    assert done.returncode == 0, done.stderr[-3000:]


@bad_input(
    "models",
    "a teacher below its own distilled student's accuracy",
    "built; the report warns: \"the teacher's val accuracy ... is below its distilled student's\"",
)
def test_a_teacher_below_its_student_is_a_warning_in_the_report():
    report = report_with_val(100)
    report.teacher.val_accuracy, report.student.val_accuracy_fp32 = 0.4, 0.6
    assert "Warning: the teacher's val accuracy (40.00%) is below its distilled student's (60.00%)" in "\n".join(
        summary(report)
    )
    assert not any(line.startswith("Warning") for line in summary(report_with_val(100)))
