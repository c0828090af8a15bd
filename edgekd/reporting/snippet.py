"""Copy-paste Python for shipping the recommended artifact: onnxruntime, OpenVINO, ExecuTorch, LiteRT,
ncnn; and Kotlin for LiteRT on Android (`edgekd.reporting.android`).

The snippets read class names, input size, scale, mean and std from the metadata embedded in
the artifact, so they stay right when the model is retrained; what only changes the code's
shape (layout, channel order, resize filter) is written in from the artifact's metadata.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

from edgekd.data.rgb import to_rgb
from edgekd.predict import Preprocessing, read_preprocessing
from edgekd.reporting.android import kotlin_litert
from edgekd.reporting.tables import row_name
from edgekd.runtime.ncnn import FP16_OPTIONS

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
    "litert": (
        "from ai_edge_litert import schema_py_generated as schema\nfrom ai_edge_litert.interpreter import Interpreter",
        'model_bytes = open("{path}", "rb").read()\n'
        "root = schema.Model.GetRootAs(model_bytes, 0)\n"
        "entries = [root.Metadata(i) for i in range(root.MetadataLength())]\n"
        'entry = next(e for e in entries if e.Name() == b"edgekd_metadata")\n'
        "embedded = json.loads(root.Buffers(entry.Buffer()).DataAsNumpy().tobytes())\n"
        "meta = {{k: json.loads(embedded[k]) for k in {keys}}}\n"
        "interpreter = Interpreter(model_content=model_bytes)\n"
        "interpreter.allocate_tensors()\n"
        "(input_,), (output,) = interpreter.get_input_details(), interpreter.get_output_details()\n"
        "\n\n"
        "def run(x: np.ndarray) -> np.ndarray:\n"
        '    if input_["dtype"] == np.int8:  # a fully int8 model takes and gives int8, in each tensor\'s scale\n'
        '        scale, zero = input_["quantization"]\n'
        "        x = np.clip(np.round(x / scale) + zero, -128, 127).astype(np.int8)\n"
        '    interpreter.set_tensor(input_["index"], x)\n'
        "    interpreter.invoke()\n"
        '    y = interpreter.get_tensor(output["index"])\n'
        '    if output["dtype"] == np.int8:\n'
        '        scale, zero = output["quantization"]\n'
        "        y = (y.astype(np.float32) - zero) * scale\n"
        "    return y",
        "run(x)[0]",
    ),
    "ncnn": (
        "import ncnn",
        'param = "{path}"\n'
        'embedded = json.loads(open(param.removesuffix("model.ncnn.param") + "metadata.json").read())\n'
        "meta = {{k: json.loads(embedded[k]) for k in {keys}}}\n"
        "net = ncnn.Net()\n"
        f"for option in {FP16_OPTIONS!r}:\n"  # the options edgekd's ncnn session turns off
        "    setattr(net.opt, option, False)  # fp32, as edgekd verified it (ncnn's ARM default is fp16)\n"
        "net.load_param(param)\n"
        'net.load_model(param.removesuffix(".param") + ".bin")\n'
        "\n\n"
        "def run(x: np.ndarray) -> np.ndarray:\n"
        "    extractor = net.create_extractor()  # one per image\n"
        '    extractor.input("in0", ncnn.Mat(x[0]).clone())\n'
        '    return np.array(extractor.extract("out0")[1])[None]',
        "run(x)[0]",
    ),
}
INSTALL = {  # by runtime: what the snippet's pip install names
    "onnxruntime": "onnxruntime",
    "openvino": "openvino",
    "executorch": "executorch",
    "litert": "ai-edge-litert",
    "ncnn": "ncnn",
}


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


def snippets(report: dict, out_dir: Path) -> dict | None:
    """For the recommended artifact of the build's target (else of the first table that has one):
    {artifact, target, precision, and code by runtime (INSTALL's keys)}; paths relative to out_dir."""
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
            pre = read_preprocessing(Path(same[0]["path"]))
            result[runtime] = _code(runtime, path, pre, install)
            if runtime == "litert":
                result["kotlin_litert"] = kotlin_litert(pre, Path(path).name)
    return result
