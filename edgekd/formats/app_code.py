"""The Python an app copies to classify an image with an artifact: one template, each format
giving its imports, how it loads the model and its metadata, and how it runs a batch.

The code reads class names, input size, scale, mean and std from the metadata embedded in the
artifact, so it stays right when the model is retrained; what only changes the code's shape
(layout, channel order, resize filter) is written in from the artifact's metadata."""

from __future__ import annotations

import inspect

from edgekd.formats.base import AppSnippet, Preprocessing

META_KEYS = ("classes", "input_size", "scale", "mean", "std")
RESAMPLING = {"bilinear": "Image.Resampling.BILINEAR", "bicubic": "Image.Resampling.BICUBIC"}


def python_code(install: str, imports: str, load: str, infer: str, path: str, pre: Preprocessing) -> str:
    from edgekd.data.rgb import to_rgb  # (here: the data package's import brings torchvision)

    steps = ['    x = (np.asarray(image, np.float32) * meta["scale"] - meta["mean"]) / meta["std"]']
    if pre.channel_order == "BGR":
        steps.append("    x = x[..., ::-1]  # the model takes BGR")
    if pre.layout == "NCHW":
        steps.append("    x = x.transpose(2, 0, 1)  # HWC -> CHW")
    return "\n".join(
        [
            f"# pip install {install} numpy pillow",
            "import json",
            "",
            "import numpy as np",
            imports,
            "from PIL import Image, ImageOps",
            "",
            load.format(path=path, keys="(" + ", ".join(f'"{k}"' for k in META_KEYS) + ")"),
            "",
            "",
            "# how training read every image file (edgekd.data.rgb): apply it to yours",
            inspect.getsource(to_rgb).rstrip(),
            "",
            "",
            "def preprocess(path: str) -> np.ndarray:",
            '    """The model\'s input for one image file, a batch of 1."""',
            '    height, width = meta["input_size"]',
            f"    image = to_rgb(Image.open(path)).resize((width, height), {RESAMPLING[pre.resize]})",
            *steps,
            "    return np.ascontiguousarray(x[None], dtype=np.float32)",
            "",
            "",
            "def classify(path: str) -> tuple[str, float]:",
            "    x = preprocess(path)",
            f"    logits = {infer.format()}",
            "    probs = np.exp(logits - logits.max())",
            "    probs /= probs.sum()",
            '    return meta["classes"][int(probs.argmax())], float(probs.max())',
            "",
            "",
            'if __name__ == "__main__":',
            '    print(classify("image.jpg"))',
            "",
        ]
    )


def python_snippet(runtime: str, install: str, imports: str, load: str, infer: str, description: str) -> AppSnippet:
    """A format's Python snippet: `load` is formatted with the artifact's `{path}` and the metadata `{keys}`."""

    def write(pre: Preprocessing, path: str) -> str:
        return python_code(install, imports, load, infer, path, pre)

    return AppSnippet(runtime, f"Python with {runtime}", "python", description, write)
