"""Settings that would ship a model nobody trained, or figures nobody should trust: refused
before any work, or said in the report."""

from __future__ import annotations

import pytest

from edgekd.reporting.text import summary
from tests.bad_inputs import bad_input
from tests.helpers import assert_one_line_error, cli, report_with_val


def build_with(tmp_path, toml: str):
    config = tmp_path / "settings.toml"
    config.write_text(toml + "\n")
    out = tmp_path / "out"
    return cli("build", "--target", "x86", "--config", str(config), "--out", str(out)), config, out


@bad_input("settings", "`distill.train.epochs = 0`", 'refused: "would ship an untrained student"')
def test_zero_distill_epochs_are_refused(tmp_path):
    done, config, out = build_with(tmp_path, "[distill.train]\nepochs = 0")
    assert_one_line_error(done, str(config), "distill.train.epochs = 0 would ship an untrained student", "1 or more")
    assert not out.exists()


@bad_input(
    "settings", "`teacher.train.epochs = 0` without --teacher", 'refused: "would distill from an untrained teacher"'
)
def test_zero_teacher_epochs_without_a_teacher_file_are_refused(tmp_path):
    done, config, out = build_with(tmp_path, "[teacher.train]\nepochs = 0")
    assert_one_line_error(done, "teacher.train.epochs = 0 would distill from an untrained teacher", "--teacher FILE")
    assert not out.exists()


@pytest.mark.parametrize("stage", ["teacher", "distill", "quantize"])
@bad_input("settings", "a learning rate of 0 or below", 'refused: "input should be greater than 0"')
def test_a_zero_learning_rate_is_refused(tmp_path, stage):
    done, config, out = build_with(tmp_path, f"[{stage}.train]\nlr = 0.0")
    assert_one_line_error(done, f"'{stage}.train.lr'", "greater than 0")
    assert not out.exists()


@bad_input(
    "settings",
    "a val split too small to rank artifacts (under 100 images)",
    "built; the report says how far one image moves accuracy",
)
def test_a_tiny_val_split_is_said_in_the_report():
    lines = summary(report_with_val(8))
    assert "Warning: accuracy measured on 8 val images, so one image moves it by 12.5 points" in "\n".join(lines)
    assert not any(line.startswith("Warning") for line in summary(report_with_val(100)))
