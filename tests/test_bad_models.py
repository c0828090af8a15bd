"""Bad model files and target files: one line naming the problem and the fix, no traceback;
an artifact that fails to benchmark makes `edgekd bench` exit 1."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgekd.models import create_model
from tests.bad_inputs import bad_input
from tests.helpers import assert_nothing_written, assert_one_line_error, build_with, cli, tiny_net


@bad_input("models", "a zero-byte teacher file (.pt, .pt2 or .onnx)", 'refused: "is empty (0 bytes)", re-save it')
@pytest.mark.parametrize("suffix", [".pt", ".pt2", ".onnx"])
def test_empty_teacher_file(tmp_path, image_folder, suffix):
    teacher = tmp_path / f"empty{suffix}"
    teacher.write_bytes(b"")
    done = build_with(teacher, image_folder, tmp_path / "out")
    assert_one_line_error(done, str(teacher), "is empty (0 bytes)", "re-save or re-download it")
    assert_nothing_written(tmp_path / "out")


class TupleOutput(nn.Module):
    """Logits and features, as many training models return them."""

    def __init__(self):
        super().__init__()
        self.net = tiny_net()

    def forward(self, x):
        return self.net(x), x.mean(dim=(2, 3))


@bad_input("models", "a .pt2 teacher whose forward returns a tuple", 'refused: "returns a tuple of 2 outputs"')
def test_pt2_teacher_returning_a_tuple(tmp_path, image_folder):
    teacher = tmp_path / "teacher.pt2"
    torch.export.save(torch.export.export(TupleOutput().eval(), (torch.zeros(1, 3, 16, 16),)), teacher)
    done = build_with(teacher, image_folder, tmp_path / "out")
    assert_one_line_error(done, str(teacher), "returns a tuple of 2 outputs", "one logits tensor [batch, classes]")
    assert_nothing_written(tmp_path / "out")


@bad_input("models", "a state_dict of another architecture", 'refused: "N missing keys (e.g. ...)", set teacher.arch')
def test_state_dict_of_another_architecture_is_summarised(tmp_path, image_folder):
    teacher = tmp_path / "teacher.pt"
    torch.save(create_model("mobilenet_v2", 3, small_input=True).state_dict(), teacher)
    done = build_with(teacher, image_folder, tmp_path / "out")
    assert_one_line_error(done, str(teacher), "teacher.arch = 'resnet18'", "missing keys (e.g. ", "unexpected keys")
    assert len(done.stderr.strip().splitlines()[-1]) - len(str(teacher)) < 250  # not every key of the model
    assert_nothing_written(tmp_path / "out")


@bad_input("settings", "an unknown key in a --target file", "refused: \"unknown key '...' (did you mean '...'?)\"")
def test_target_file_typo_suggests_the_key(tmp_path):
    target = tmp_path / "my.toml"
    target.write_text('name = "my"\narch = "x86_64"\nruntimess = ["onnxruntime"]\n')
    done = cli("build", "--target", str(target), "--out", str(tmp_path / "out"))
    assert_one_line_error(done, str(target), "unknown key 'runtimess'", "did you mean 'runtimes'")


@bad_input("models", "a truncated .onnx passed to edgekd bench", 'refused: exit 1, "failed to benchmark: FILE: reason"')
def test_bench_of_a_truncated_onnx_exits_1(tmp_path):
    whole = tmp_path / "whole.onnx"
    torch.onnx.export(tiny_net().eval(), torch.zeros(1, 3, 16, 16), str(whole), dynamo=False)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    done = cli("bench", str(whole), str(truncated), "--target", "x86")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "status=ok" in done.stdout and "status=failed" in done.stdout  # the rows stay on stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and str(truncated) in errors[0] and str(whole) not in errors[0], done.stderr
    assert "Traceback" not in done.stdout + done.stderr
