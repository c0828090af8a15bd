"""Shared fixtures. Tests run offline on small data that edgekd makes (the embedded digits)
or writes here; nothing is mocked: torch, onnxruntime and OpenVINO run for real.

Under pytest-xdist (`-n 2 --dist loadfile`, see the README) the workers of one run share
edgekd's cache and the session's build: whichever worker comes first makes them, the other waits
for it (a file lock) and reads the result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edgekd.io import waiting_for
from edgekd.progress import set_quiet
from tests.helpers import MOBILE_FORMATS, write_config, write_image_folder


def run_folder(tmp_path_factory) -> Path:
    """The folder of this test run, shared by its xdist workers (each has a folder under it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session", autouse=True)
def _hermetic(tmp_path_factory):
    cache = run_folder(tmp_path_factory) / "cache"
    cache.mkdir(exist_ok=True)
    os.environ["EDGEKD_CACHE"] = str(cache)
    set_quiet(True)
    torch.manual_seed(0)


@pytest.fixture
def image_folder(tmp_path) -> Path:
    return write_image_folder(tmp_path / "images")


@pytest.fixture
def tiny_config(tmp_path) -> Path:
    return write_config(tmp_path / "tiny.toml")


@pytest.fixture(scope="session")
def mobile_build(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """One finished tiny build with every format of both QAT backends (`(config, out, the run)`), read by
    the tests of the mobile formats, of ExecuTorch under ARM emulation and of SSH devices, so
    that the suite exports each format once: ExecuTorch's lowering alone takes 12 s a model.
    Its stages' keys do not depend on the formats: a copy of its work folder serves another
    build of the tiny config."""
    for module, extra in MOBILE_FORMATS.values():
        pytest.importorskip(module, reason=f"pip install 'edgekd[{extra}]'")
    root = run_folder(tmp_path_factory) / "backends"
    config, out, ran = root / "tiny.toml", root / "out", root / "run.json"
    with waiting_for(root.parent / "backends.lock", "the tests' shared build"):
        if not ran.is_file():
            write_config(config, {"export.formats": ["onnx", "openvino", *MOBILE_FORMATS]})
            command = [sys.executable, "-m", "edgekd", "build", "--target", "x86", "--config", str(config)]
            done = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True)
            ran.write_text(json.dumps({"args": done.args, "returncode": done.returncode, "stdout": done.stdout,
                                       "stderr": done.stderr}))  # fmt: skip
    done = subprocess.CompletedProcess(**json.loads(ran.read_text()))
    assert done.returncode == 0, done.stderr[-3000:]  # else every test that reads it errors, with the reason
    return config, out, done
