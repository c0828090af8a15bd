"""What an export format is (`Format`), the registry of them (`FORMATS`), and what every converter
takes: the metadata an app needs and, for int8, the QAT's calibration images and scheme."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from edgekd.registry import Registry
from edgekd.targets import Int8Flavour

if TYPE_CHECKING:
    from edgekd.training.checkpoints import QatCheckpoint

# (model, destination, metadata, ONNX opset, int8 inputs) -> the file a runtime opens
Converter = Callable[..., Path]


METADATA_KEYS = ("classes", "input_size", "layout", "channel_order", "resize", "scale", "mean", "std", "image_rules")


class Preprocessing(BaseModel):
    """The preprocessing an artifact carries in its metadata (`metadata`), typed."""

    model_config = ConfigDict(extra="ignore")

    classes: list[str]
    input_size: tuple[int, int]  # height, width
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    channel_order: Literal["RGB", "BGR"] = "RGB"
    resize: Literal["bilinear", "bicubic"] = "bilinear"
    scale: float = 1 / 255
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    image_rules: list[str] = []  # how training turned files into 8-bit RGB: `edgekd.data.rgb.to_rgb`


@dataclass(frozen=True)
class AppSnippet:
    """Code an app copies to run an artifact: Python or Kotlin, by its key in the report's `snippet`."""

    key: str  # the report field, e.g. "onnxruntime" or "kotlin_litert"
    title: str  # how the report introduces it: "Python with onnxruntime"
    language: str  # the code block's language: python, kotlin
    description: str  # the report schema's description of the field
    write: Callable[[Preprocessing, str], str]  # (the artifact's preprocessing, its path for the app) -> code


@dataclass(frozen=True)
class Format:
    """One export format, registered by its module in `edgekd/formats/` (`FORMATS`)."""

    name: str
    title: str
    runtime: str  # the runtime that verifies and benchmarks it (`edgekd.runtime`)
    suffix: str  # of what the export writes: a file, or a folder (`folder`) holding `opens`
    opens: str  # the file a runtime loads: `model.xml` inside the folder, or the artifact itself
    convert: Converter  # torch2<format>
    folder: bool = False
    precisions: tuple[str, ...] = ("fp32", "int8")
    quantizer: str = "nncf"  # the `edgekd.quantizers` backend whose QAT its int8 artifact comes from
    extra: str | None = None  # the pip extra its converter and runtime need (None: the base install)
    # reads the key/values edgekd embedded; None: through its runtime's session; `predicts` False: none embedded
    read_metadata: Callable[[Path], dict[str, str]] | None = None
    predicts: bool = True  # `edgekd predict` runs it
    snippets: tuple[AppSnippet, ...] = ()

    def install_hint(self) -> str:
        from edgekd.runtime import session_class

        if self.extra:
            return f"pip install 'edgekd[{self.extra}]'"
        return f"pip install {session_class(self.runtime).package}"


FORMATS: Registry[Format] = Registry("export format")


def register(fmt: Format) -> Format:
    return FORMATS.register(fmt.name)(fmt)


def app_snippets() -> list[AppSnippet]:
    """Every registered format's app snippets, Python first (the report shows them in this order)."""
    every = [s for fmt in FORMATS.values() for s in fmt.snippets]
    return [s for s in every if s.language == "python"] + [s for s in every if s.language != "python"]


def metadata(preprocessing: dict, precision: str) -> dict[str, str]:
    """Flat string key/values: the form both ONNX metadata_props and OpenVINO rt_info hold."""
    meta = {k: json.dumps(v) for k, v in preprocessing.items()}
    return meta | {"precision": precision, "producer": "edgekd"}


def example_input(meta: dict[str, str], batch: int = 1):
    """A zero batch at the model's input size, which the exporters trace with."""
    import torch

    return torch.zeros(batch, 3, *json.loads(meta["input_size"]))


@dataclass(frozen=True)
class Int8Inputs:
    """What an int8 export needs beside the model."""

    calibration: np.ndarray  # a few normalized training images, NCHW
    flavour: Int8Flavour  # the target's int8 scheme, which the model was trained for

    @staticmethod
    def choose(current: Int8Inputs | None, qat: QatCheckpoint) -> Int8Inputs:
        """From NNCF's QAT where there is one (the ONNX export re-lays its Q/DQ out with its
        images), else from the first: every int8 artifact's metadata names its scheme."""
        if current is None or qat.quantizer == "nncf":
            return Int8Inputs(qat.calibration_array(), qat.int8)
        return current
