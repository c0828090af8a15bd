"""A format is one module: a toy format and its runtime, registered from a test module alone
(`tests/toy_format.py`), are exported, verified, benchmarked and reported by `edgekd build`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT, write_config

pytestmark = pytest.mark.slow


def test_a_format_from_one_plugin_module_goes_through_the_whole_build(tmp_path):
    config = write_config(tmp_path / "tiny.toml", {"export.formats": ["toy"]})
    out = tmp_path / "out"
    env = {**os.environ, "EDGEKD_PLUGINS": "tests.toy_format", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "edgekd", "build", "--target", "x86", "--config", str(config), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]

    report = json.loads((out / "report.json").read_text())
    (artifact,) = report["artifacts"]
    assert artifact["name"] == "toy-fp32" and artifact["format"] == "toy" and artifact["runtime"] == "toy-ort"
    assert artifact["path"].endswith("student_fp32.toy") and artifact["size_mb"] > 0
    assert artifact["verification"]["passed"] and artifact["verification"]["agreement"] >= 0.99
    (host,) = report["tables"]
    (row,) = host["rows"]
    assert row["artifact"] == "toy-fp32" and row["status"] == "ok", row
    assert 0 < row["p50_ms"] <= row["p99_ms"] and row["peak_rss_mb"] > 0  # measured in its own process
    assert "toy-fp32" in (out / "report.md").read_text()


def test_a_plugin_that_cannot_be_imported_is_one_line_naming_the_fix(tmp_path):
    env = {**os.environ, "EDGEKD_PLUGINS": "tests.no_such_plugin"}
    done = subprocess.run([sys.executable, "-m", "edgekd", "targets"], capture_output=True, text=True, env=env)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "tests.no_such_plugin" in line and "EDGEKD_PLUGINS" in line
