"""`edgekd predict ARTIFACT IMAGE...`: classify images with an exported artifact alone.

Everything an app needs (class names, input size, channel order, resize, scale, mean/std,
layout) is read from the metadata embedded at export (ONNX metadata_props, OpenVINO
rt_info), so an artifact is usable without the config or checkpoint that produced it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgekd.data.rgb import to_rgb
from edgekd.errors import EdgekdError
from edgekd.formats import format_of

KEYS = ("classes", "input_size", "layout", "channel_order", "resize", "scale", "mean", "std", "image_rules")
RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


class Preprocessing(BaseModel):
    """The preprocessing embedded by `stages.export.metadata`, typed."""

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


class PredictConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    top_k: int = Field(3, ge=1)
    threads: int = Field(2, ge=1)


# formats that carry the preprocessing metadata predict reads
PREDICTS = ("onnx", "openvino", "executorch", "tflite", "ncnn")


def runtime_of(artifact: Path) -> str:
    fmt = format_of(artifact)
    if fmt.name not in PREDICTS:
        raise EdgekdError(f"{artifact}: edgekd predict runs {' or '.join(PREDICTS)} artifacts, not {fmt.title}")
    return fmt.runtime


def _raw_metadata(artifact: Path) -> dict[str, str]:
    try:
        runtime = runtime_of(artifact)
        if runtime == "onnxruntime":
            import onnx

            # metadata only: the weights are not needed to read it
            model = onnx.load(str(artifact), load_external_data=False)
            return {p.key: p.value for p in model.metadata_props}
        if runtime == "openvino":
            import openvino as ov

            model = ov.Core().read_model(str(artifact))
            present = [k for k in KEYS if model.has_rt_info(["model_info", k])]
            return {k: model.get_rt_info(["model_info", k]).astype(str) for k in present}
        from edgekd.runtime import open_session

        return open_session(runtime, str(artifact), 1).metadata()
    except EdgekdError:
        raise
    except Exception as e:  # each runtime raises its own types for an unreadable model
        raise EdgekdError(f"cannot read {artifact} as a model: {str(e).splitlines()[0][:200]}") from None


def read_preprocessing(artifact: Path) -> Preprocessing:
    raw = _raw_metadata(Path(artifact))
    missing = [k for k in ("classes", "input_size", "mean", "std") if k not in raw]
    if missing:
        raise EdgekdError(
            f"{artifact} carries no preprocessing metadata ({', '.join(missing)} missing); "
            "export it with `edgekd export` or `edgekd build`"
        )
    try:
        return Preprocessing(**{k: json.loads(v) for k, v in raw.items() if k in KEYS})
    except (json.JSONDecodeError, ValidationError) as e:
        raise EdgekdError(f"{artifact}: its preprocessing metadata is malformed ({str(e).splitlines()[0]})") from None


def preprocess(image_path: Path, pre: Preprocessing) -> np.ndarray:
    """One image as the model's input, batch of 1, float32."""
    try:
        with Image.open(image_path) as image:
            rgb = to_rgb(image)  # as training read it: orientation, 16-bit, transparency
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise EdgekdError(f"cannot read image {image_path}: {e}") from None
    height, width = pre.input_size
    pixels = np.asarray(rgb.resize((width, height), RESAMPLING[pre.resize]), dtype=np.float32) * pre.scale
    pixels = (pixels - np.float32(pre.mean)) / np.float32(pre.std)
    if pre.channel_order == "BGR":
        pixels = pixels[..., ::-1]
    if pre.layout == "NCHW":
        pixels = pixels.transpose(2, 0, 1)
    return np.ascontiguousarray(pixels[None], dtype=np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def predict(cfg: PredictConfig, artifact: Path, images: list[Path]) -> list[dict]:
    """Per image: its path and the top-k classes with probabilities, most likely first."""
    from edgekd.runtime import open_session

    artifact = Path(artifact)
    if not artifact.is_file():
        raise EdgekdError(f"{artifact} does not exist")
    pre = read_preprocessing(artifact)
    session = open_session(runtime_of(artifact), str(artifact), cfg.threads)
    results = []
    for image in images:
        probs = softmax(session.run(preprocess(Path(image), pre))[0])
        order = np.argsort(-probs)[: cfg.top_k]
        top = [{"class": pre.classes[i], "probability": float(probs[i])} for i in order]
        results.append({"image": str(image), "top": top})
    return results
