"""Bad input: one line that names the problem and the fix, exit status 2, no traceback,
and nothing half-written in the output directory."""

from __future__ import annotations

import pytest
import torch

from edgekd.models import create_model
from tests.bad_inputs import bad_input
from tests.helpers import assert_nothing_written, assert_one_line_error, cli, edgekd


@bad_input("layout", "--data naming a folder that does not exist", 'refused: "does not exist", pass --data')
def test_missing_data_path(tmp_path):
    out = tmp_path / "out"
    # the one real `python -m edgekd` run of this module; the others run the same CLI in-process
    done = edgekd("build", "--target", "x86", "--data", str(tmp_path / "nope"), "--out", str(out))
    assert_one_line_error(done, "does not exist", "--data")
    assert_nothing_written(out)


@bad_input("layout", "a data folder with no images", 'refused: "no images found"')
def test_empty_dataset(tmp_path):
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    out = tmp_path / "out"
    done = cli("build", "--target", "x86", "--data", str(tmp_path / "empty"), "--out", str(out))
    assert_one_line_error(done, "no images found")
    assert_nothing_written(out)


@bad_input("settings", "an unknown --target (`amr`)", "refused: \"unknown target 'amr' (did you mean 'arm'?)\"")
def test_unknown_target(tmp_path):
    done = cli("build", "--target", "amr", "--out", str(tmp_path / "out"))
    assert_one_line_error(done, "unknown target 'amr'", "did you mean 'arm'")
    assert not (tmp_path / "out").exists()


@bad_input("settings", "an unknown --student", 'refused: "unknown model", lists the students')
def test_unknown_student(tmp_path):
    done = cli("build", "--target", "x86", "--student", "mobilenet_v9", "--out", str(tmp_path / "out"))
    assert_one_line_error(done, "unknown model 'mobilenet_v9'", "mobilenet_v2")
    assert not (tmp_path / "out").exists()


@bad_input(
    "models", "a teacher trained for another number of classes", 'refused: "predicts 7 classes but the data has 3"'
)
def test_teacher_class_count_mismatch(tmp_path, image_folder):
    teacher = tmp_path / "teacher.pt"
    torch.save(create_model("resnet18", 7, small_input=True).state_dict(), teacher)
    out = tmp_path / "out"
    done = cli("build", "--target", "x86", "--data", str(image_folder), "--teacher", str(teacher), "--out", str(out))
    assert_one_line_error(done, "predicts 7 classes but the data has 3")
    assert_nothing_written(out)


@bad_input("models", "a --teacher file that does not exist", 'refused: "teacher file ... does not exist"')
def test_missing_teacher_file_is_named_in_a_build_and_a_dry_run(tmp_path, image_folder):
    # the stage keys hash the teacher file before anything loads it: the check must come first
    teacher, out = tmp_path / "gone.pt", tmp_path / "out"
    for extra in ([], ["--dry-run"]):
        args = ["build", "--target", "x86", "--data", str(image_folder), "--teacher", str(teacher), "--out", str(out)]
        done = cli(*args, *extra)
        assert_one_line_error(done, f"teacher file {teacher} does not exist", "--teacher FILE")
        assert_nothing_written(out)


@pytest.mark.parametrize("suffix", [".pt", ".pt2", ".onnx"])
@bad_input("models", "a teacher file that is not a model (.pt, .pt2 or .onnx)", "refused, naming the file")
def test_unreadable_teacher_file(tmp_path, image_folder, suffix):
    teacher = tmp_path / f"teacher{suffix}"
    teacher.write_bytes(b"this is not a model")
    out = tmp_path / "out"
    done = cli("build", "--target", "x86", "--data", str(image_folder), "--teacher", str(teacher), "--out", str(out))
    assert_one_line_error(done, str(teacher))
    assert_nothing_written(out)


@bad_input(
    "settings", "a misspelt key in --config (`[distil]`)", "refused: \"unknown key 'distil' (did you mean 'distill'?)\""
)
def test_config_typo_suggests_the_key(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[distil]\nloss = 'kd'\n")
    done = cli("build", "--target", "x86", "--config", str(config), "--out", str(tmp_path / "out"))
    assert_one_line_error(done, "unknown key 'distil'", "did you mean 'distill'")


@bad_input("settings", "an out-of-range setting (`data.input_size = 2`)", "refused: names the key and the bound")
def test_config_out_of_range_value(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[data]\ninput_size = 2\n")
    done = cli("build", "--target", "x86", "--config", str(config), "--out", str(tmp_path / "out"))
    assert_one_line_error(done, "data.input_size", "greater than or equal to 8")


def test_targets_lists_the_profiles():
    done = cli("targets")
    assert done.returncode == 0
    names = [line.split()[0] for line in done.stdout.splitlines()]
    assert {"x86", "arm", "cuda"} <= set(names)
