"""Copy-paste Python for shipping the recommended artifact, with onnxruntime, OpenVINO and ExecuTorch.

The snippets read class names, input size, scale, mean and std from the metadata embedded in
the artifact, so they stay right when the model is retrained; what only changes the code's
shape (layout, channel order, resize filter) is written in from the artifact's metadata.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

from edgekd.predict import Preprocessing, read_preprocessing
from edgekd.reporting.tables import row_name
from edgekd.rgb import to_rgb

META_KEYS = ("classes", "input_size", "scale", "mean", "std")
RESAMPLING = {"bilinear": "Image.Resampling.BILINEAR", "bicubic": "Image.Resampling.BICUBIC"}

OPEN = {
    "onnxruntime": (
        "import onnxruntime as ort",
        'session = ort.InferenceSession("{path}")\n'
        "embedded = session.get_modelmeta().custom_metadata_map\n"
        "meta = {{k: json.loads(embedded[k]) for k in {keys}}}\n"
        "input_name = session.get_inputs()[0].name",
        "session.run(None, {{input_name: x}})[0][0]",
    ),
    "openvino": (
        "import openvino as ov",
        "core = ov.Core()\n"
        'model = core.read_model("{path}")\n'
        'meta = {{k: json.loads(model.get_rt_info(["model_info", k]).astype(str)) for k in {keys}}}\n'
        'compiled = core.compile_model(model, "CPU")',
        "compiled(x)[0][0]",
    ),
    "executorch": (
        "import torch\nfrom executorch.runtime import Runtime",
        'program = Runtime.get().load_program("{path}")\n'
        'embedded = json.loads(program.load_method("edgekd_metadata").execute([])[0])\n'
        "meta = {{k: json.loads(embedded[k]) for k in {keys}}}\n"
        'forward = program.load_method("forward")',
        "forward.execute([torch.from_numpy(x)])[0][0].numpy()",
    ),
}
INSTALL = {"onnxruntime": "onnxruntime", "openvino": "openvino", "executorch": "executorch"}  # by runtime


def _code(runtime: str, path: str, pre: Preprocessing, install: str) -> str:
    module, load, infer = OPEN[runtime]
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
            module,
            "from PIL import Image, ImageOps",
            "",
            load.format(path=path, keys="(" + ", ".join(f'"{k}"' for k in META_KEYS) + ")"),
            "",
            "",
            "# how training read every image file (edgekd.rgb): apply it to yours",
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


def snippets(report: dict, out_dir: Path) -> dict | None:
    """For the recommended artifact of the build's target (else of the first table that has one):
    {artifact, target, precision, onnxruntime / openvino / executorch: code}; paths relative to out_dir."""
    tables = sorted(report["tables"], key=lambda t: t["target"] != report["target"])
    chosen = next((t for t in tables if t.get("recommended")), None)
    if chosen is None:
        return None
    by_name = {a["name"]: a for a in report["artifacts"]}
    row = next(r for r in chosen["rows"] if row_name(r) == chosen["recommended"])
    precision = by_name[row["artifact"]]["precision"]
    result = {"artifact": chosen["recommended"], "target": chosen["target"], "precision": precision}
    for runtime, install in INSTALL.items():
        # the recommended precision, in this runtime's own format
        same = [a for a in report["artifacts"] if a["precision"] == precision and a["runtime"] == runtime]
        if same:
            path = os.path.relpath(same[0]["path"], out_dir)
            result[runtime] = _code(runtime, path, read_preprocessing(Path(same[0]["path"])), install)
    return result
