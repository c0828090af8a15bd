"""`edgekd predict ARTIFACT IMAGE...`: classify images with an exported artifact alone.

Everything an app needs (class names, input size, channel order, resize, scale, mean/std,
layout) is read from the metadata embedded at export (each format's own place for it,
`edgekd.formats.read_preprocessing`), so an artifact is usable without the config or
checkpoint that produced it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field

from edgekd.data.rgb import to_rgb
from edgekd.errors import EdgekdError
from edgekd.formats import Preprocessing, read_preprocessing
from edgekd.formats.artifact import predictable_format

RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


class PredictConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    top_k: int = Field(3, ge=1)
    threads: int = Field(2, ge=1)


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
    session = open_session(predictable_format(artifact).runtime, str(artifact), cfg.threads)
    results = []
    for image in images:
        probs = softmax(session.run(preprocess(Path(image), pre))[0])
        order = np.argsort(-probs)[: cfg.top_k]
        top = [{"class": pre.classes[i], "probability": float(probs[i])} for i in order]
        results.append({"image": str(image), "top": top})
    return results
