"""Shared fixtures. Tests run offline on small data that edgekd makes (the embedded digits)
or writes here; nothing is mocked: torch, onnxruntime and OpenVINO run for real."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgekd.progress import set_quiet

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session", autouse=True)
def _hermetic(tmp_path_factory):
    os.environ["EDGEKD_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    set_quiet(True)
    torch.manual_seed(0)


def write_image_folder(root: Path, classes: int = 3, per_class: int = 6, size: int = 16, seed: int = 0) -> Path:
    """A small ImageFolder of random RGB images whose class sets the mean colour."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / f"class_{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            base = np.zeros((size, size, 3)) + 60 * c
            pixels = np.clip(base + rng.normal(0, 30, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


@pytest.fixture
def image_folder(tmp_path) -> Path:
    return write_image_folder(tmp_path / "images")


TINY_CONFIG = """
[data]
input_size = 16
augment = []
batch_size = 32
workers = 0
max_train_samples = 200
max_val_samples = 100
mean = [0.5, 0.5, 0.5]
std = [0.5, 0.5, 0.5]

[teacher]
arch = "resnet18"
train = {{ epochs = 1, lr = 0.003, optimizer = "adamw" }}
check_accuracy = false  # the tests' teacher files have random weights: near chance by design

[student]
name = "{student}"

[distill]
loss = "kd"
params = {{ temperature = 4.0, ce_weight = 0.1, kd_weight = 0.9 }}
train = {{ epochs = 1, lr = 0.003, optimizer = "adamw" }}

[quantize]
calibration_samples = 32
train = {{ epochs = 1, lr = 0.0001, optimizer = "adamw", schedule = "cosine" }}

[verify]
min_agreement_fp32 = 0.99
min_agreement_int8 = 0.90

[bench]
warmup = 2
runs = 10
"""


@pytest.fixture
def tiny_config(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_CONFIG.format(student="mobilenet_v3_small"))
    return path
