"""What several test modules share, in one place: the tiny pipeline config and its one builder,
small data and models, and the ways tests run edgekd and read its errors. pytest fixtures are in
conftest.py; the bad-input declarations in bad_inputs.py (also a script that rewrites the README)."""

from __future__ import annotations

import json
import subprocess
import sys
from copy import deepcopy
from pathlib import Path

import numpy as np
import onnx
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from edgekd.reporting.schema import ArtifactFacts
from edgekd.stages.distill import StudentConfig

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------- the pipeline config

# The tiny pipeline: seconds per stage on the embedded digits or a small image folder. The tests'
# teacher files have random weights (near chance by design), hence check_accuracy = false.
TINY: dict[str, dict] = {
    "data": {
        "input_size": 16, "augment": [], "batch_size": 32, "workers": 0, "max_train_samples": 200,
        "max_val_samples": 100, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
    },
    "teacher": {"arch": "resnet18", "train": {"epochs": 1, "lr": 0.003, "optimizer": "adamw"}, "check_accuracy": False},
    "student": {"name": "mobilenet_v3_small"},
    "distill": {
        "loss": "kd", "params": {"temperature": 4.0, "ce_weight": 0.1, "kd_weight": 0.9},
        "train": {"epochs": 1, "lr": 0.003, "optimizer": "adamw"},
    },
    "quantize": {
        "calibration_samples": 32, "train": {"epochs": 1, "lr": 0.0001, "optimizer": "adamw", "schedule": "cosine"},
    },
    "verify": {"min_agreement_fp32": 0.99, "min_agreement_int8": 0.90},
    "bench": {"warmup": 2, "runs": 10},
}  # fmt: skip


def pipeline_toml(settings: dict[str, object] | None = None, base: dict[str, dict] = TINY) -> str:
    """The TOML of `base` (the tiny pipeline) with `settings` applied, each a dotted key as
    `--set` takes them ("distill.train.epochs": 3): the value replaces the key's whole value (a
    table included), None removes the key (a section too)."""
    config = deepcopy(base)
    for dotted, value in (settings or {}).items():
        *parents, key = dotted.split(".")
        table = config
        for parent in parents:
            table = table.setdefault(parent, {})
        if value is None:
            table.pop(key, None)
        else:
            table[key] = deepcopy(value)
    lines: list[str] = []
    for section, table in config.items():
        lines += [f"[{section}]", *(f"{key} = {_toml(value)}" for key, value in table.items()), ""]
    return "\n".join(lines)


# a build's quickest run end to end: no QAT, ONNX fp32 alone
FP32_ONNX = {"quantize.enabled": False, "export.formats": ["onnx"]}


def write_config(path: Path, settings: dict[str, object] | None = None, base: dict[str, dict] = TINY) -> Path:
    """`pipeline_toml(settings, base)` written to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(pipeline_toml(settings, base))
    return path


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


# ----------------------------------------------------------------------------- data and models


def write_image_folder(root: Path, classes: int = 3, per_class: int = 6, size: int = 16, seed: int = 0) -> Path:
    """A small ImageFolder of random RGB images whose class sets the mean colour (60 c)."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / f"class_{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            base = np.zeros((size, size, 3)) + 60 * c
            pixels = np.clip(base + rng.normal(0, 30, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


SIZE = 16
PREPROCESSING = {
    "classes": ["cat", "dog", "emu"],
    "input_size": [SIZE, SIZE],
    "layout": "NCHW",
    "channel_order": "RGB",
    "resize": "bilinear",
    "scale": 1 / 255,
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
}


def trained_like(name: str) -> torch.nn.Module:
    """Random weights with BatchNorm statistics set from data, so activations have the
    ranges of a trained network instead of vanishing layer by layer. Seeded, so a test's
    model does not depend on which tests ran before it."""
    from edgekd.models import create_model

    torch.manual_seed(0)
    model = create_model(name, 3, small_input=True).train()
    with torch.no_grad():
        for _ in range(5):
            model(torch.randn(16, 3, SIZE, SIZE))
    return model.eval()


# the mobile formats: the module each one's runtime imports, and the extra that installs it
MOBILE_FORMATS = {
    "executorch": ("executorch.runtime", "executorch"),
    "tflite": ("ai_edge_litert.interpreter", "tflite"),
    "ncnn": ("ncnn", "ncnn"),
}


def built_artifacts(out: Path) -> dict[str, ArtifactFacts]:
    """A finished build's artifacts by name, as its report lists them (fp32 first)."""
    from edgekd.stages.report import load_report

    return {a.name: a for a in load_report(out).artifacts}


CLASSES = ["class_0", "class_1", "class_2"]  # write_image_folder's, at its default of 3


def tiny_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))


def onnx_teacher(path, size: int, classes: list[str] | None = None):
    """`tiny_net` as an ONNX teacher for `size`x`size` images, with class names when given."""
    torch.onnx.export(tiny_net().eval(), torch.zeros(1, 3, size, size), str(path), dynamo=False, input_names=["x"])
    if classes is not None:
        proto = onnx.load(str(path))
        onnx.helper.set_model_props(proto, {"classes": json.dumps(classes)})
        onnx.save(proto, str(path))
    return path


class MeanColourTeacher(nn.Module):
    """A teacher that knows `write_image_folder`'s classes (class c's mean colour is 60 c): the
    nearest class mean, under the tiny config's mean = std = 0.5. `order` permutes its classes
    (a teacher trained on the class folders in another order); `softmax` ends it with one."""

    def __init__(self, order: tuple[int, ...] = (0, 1, 2), softmax: bool = False):
        super().__init__()
        self.register_buffer("means", torch.tensor([(60 * c / 255 - 0.5) / 0.5 for c in order]))
        self.softmax = softmax

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = -50 * (images.mean(dim=(1, 2, 3))[:, None] - self.means) ** 2
        return logits.softmax(dim=1) if self.softmax else logits


def export_teacher(model: nn.Module, path, batch: int = 1):
    """As users export: a static batch (torch.export's default; ONNX without dynamic_axes)."""
    example = torch.randn(batch, 3, 16, 16)
    if path.suffix == ".pt2":
        torch.export.save(torch.export.export(model.eval(), (example,)), path)
    else:
        torch.onnx.export(model.eval(), example, str(path), dynamo=False, input_names=["x"])
    return path


STUDENT = StudentConfig(name="mobilenet_v3_small", small_input=True)  # as the distill stage builds it


class CountingTeacher(nn.Module):
    """A small real teacher that counts the batches it sees."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.net(x)


# --------------------------------------------------------------------------- running edgekd


def edgekd(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m edgekd ARGS` in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "edgekd", *args], capture_output=True, text=True, cwd=cwd)


def cli(*args: str) -> subprocess.CompletedProcess:
    """`edgekd ARGS` run in the test process: the same CLI code (`user_errors`, exit status, the
    one `error:` line) without a fresh interpreter's 4 s of imports. Each error module keeps one
    real `python -m edgekd` run as well."""
    from edgekd.cli import app

    # an exception the CLI does not turn into its one line propagates: a traceback in a real run
    result = CliRunner().invoke(app, [*args, "--quiet"] if args[0] == "build" else list(args), catch_exceptions=False)
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def checkpoint(done: subprocess.CompletedProcess, stage: str) -> Path:
    """The checkpoint `edgekd distill`, `quantize` or `build --until` printed for `stage`
    (`distill`, `quantize`, `quantize-xnnpack`)."""
    (line,) = [line for line in done.stdout.splitlines() if line.startswith(f"{stage}: ")]
    return Path(line.removeprefix(f"{stage}: "))


def build_with(teacher, data, out, run=cli):
    return run("build", "--target", "x86", "--data", str(data), "--teacher", str(teacher), "--out", str(out))


def assert_one_line_error(done: subprocess.CompletedProcess, *fragments: str) -> None:
    assert done.returncode == 2, done.stderr
    # progress lines may come first (stderr carries progress); the error is one line, last
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and done.stderr.strip().splitlines()[-1] == errors[0], done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def assert_nothing_written(out: Path) -> None:
    assert not out.exists() or not any(out.rglob("*.onnx")) and not (out / "report.json").exists()


def said(done: subprocess.CompletedProcess) -> str:
    """stderr with the console's line wrapping undone."""
    return " ".join(done.stderr.split())


def report_with_val(images: int):
    """A report with no artifacts whose val split has `images` images."""
    from edgekd.reporting.environment import environment
    from edgekd.reporting.schema import SCHEMA, Report

    return Report(
        schema=SCHEMA,
        created="now",
        target="x86",
        edgekd_version="test",
        config={},
        environment=environment(),
        data={"path": "d", "classes": ["a", "b"], "train_samples": 40, "val_samples": images, "input_size": 32},
        teacher={"source": "t", "val_accuracy": 0.5},
        student={"arch": "s", "val_accuracy_fp32": 0.5, "val_accuracy_int8": None},
        artifacts=[],
        tables=[],
    )
