"""Shared fixtures. Tests run offline on small data that edgekd makes (the embedded digits)
or writes here; nothing is mocked: torch, onnxruntime and OpenVINO run for real."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from edgekd.progress import set_quiet
from tests.helpers import write_config, write_image_folder


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
