"""Shared fixtures. Tests run offline on small data that edgekd makes (the embedded digits)
or writes here; nothing is mocked: torch, onnxruntime and OpenVINO run for real."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edgekd.progress import set_quiet
from tests.helpers import MOBILE_FORMATS, write_config, write_image_folder


@pytest.fixture(scope="session", autouse=True)
def _hermetic(tmp_path_factory):
    os.environ["EDGEKD_CACHE"] = str(tmp_path_factory.mktemp("cache"))
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
    root = tmp_path_factory.mktemp("backends")
    config = write_config(root / "tiny.toml", {"export.formats": ["onnx", "openvino", *MOBILE_FORMATS]})
    out = root / "out"
    command = [sys.executable, "-m", "edgekd", "build", "--target", "x86", "--config", str(config), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]  # else every test that reads it errors, with the reason
    return config, out, done
