"""ncnn's param and bin through pnnx, batch 1, weights in fp32 (pnnx's default stores them in
fp16). Its int8 is the PT2E QAT's (XNNPACK's scheme), in the layout ncnn's ncnn2int8 writes
(`edgekd.formats.ncnn_int8`). ncnn's files hold no key/values: the metadata is `metadata.json`
beside them."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from edgekd.errors import EdgekdError
from edgekd.formats.app_code import python_snippet
from edgekd.formats.base import Format, example_input, register
from edgekd.io import atomic_path

if TYPE_CHECKING:
    from torch import nn
from edgekd.runtime.base import native_output_silenced
from edgekd.runtime.ncnn import FP16_OPTIONS
from edgekd.runtime.ncnn import METADATA_FILE as NCNN_METADATA


def torch2ncnn(model: nn.Module, dest: Path, meta: dict[str, str], opset: int, int8=None) -> Path:
    """The int8 model is converted without its quantize/dequantize pairs; its convolutions then
    take the QAT's int8 weights and scales."""
    import pnnx

    from edgekd.formats import ncnn_int8

    scales = ncnn_int8.layer_scales(model) if meta["precision"] == "int8" else None
    traced = ncnn_int8.float_graph(model) if scales is not None else model.eval()
    with tempfile.TemporaryDirectory(prefix="edgekd-pnnx-") as tmp, native_output_silenced(1, 2):
        # pnnx writes its intermediate files beside the traced model, and prints its passes
        pnnx.export(traced, str(Path(tmp) / "model.pt"), (example_input(meta),), fp16=False)
        param, weights = Path(tmp) / "model.ncnn.param", Path(tmp) / "model.ncnn.bin"
        if scales is not None:
            text, data, found, total = ncnn_int8.rewrite(param, weights, scales)
            if found == 0:
                raise EdgekdError(f"ncnn int8: none of the {total} convolutions pnnx wrote is one the QAT quantized")
            param.write_text(text)
            weights.write_bytes(data)
        with atomic_path(dest) as folder:
            folder.mkdir()
            for path in (param, weights):
                shutil.move(path, folder / path.name)
            (folder / NCNN_METADATA).write_text(json.dumps(meta, indent=1))
    return dest / "model.ncnn.param"


SNIPPET = python_snippet(
    "ncnn",
    "ncnn",
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
    "the same with ncnn's Python binding",
)

NCNN = register(
    Format(
        "ncnn", "ncnn (pnnx)", "ncnn", "_ncnn", "model.ncnn.param", torch2ncnn, folder=True,
        quantizer="xnnpack", extra="ncnn", snippets=(SNIPPET,),
    )
)  # fmt: skip
