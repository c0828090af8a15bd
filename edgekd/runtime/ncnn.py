"""ncnn through its Python binding, on a model pnnx converted (model.ncnn.param + .bin)."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import numpy as np

from edgekd.runtime.base import Session, register, summarize_convs

METADATA_FILE = "metadata.json"  # beside the param and bin: ncnn's files hold no key/values
FP16_OPTIONS = ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic", "use_bf16_storage")
CONVS = ("Convolution", "ConvolutionDepthWise", "InnerProduct")  # the layers ncnn runs in int8, given scales


def _version() -> str | None:
    try:
        import ncnn  # noqa: F401
    except ImportError:
        return None
    return metadata.version("ncnn")


class NcnnSession(Session):
    runtime = "ncnn"
    package = "ncnn"

    def __init__(self, path: str, threads: int):
        import ncnn

        self._ncnn = ncnn
        self.path = Path(path)
        self.net = ncnn.Net()
        self.net.opt.num_threads = threads
        # fp32 as exported and verified: ncnn's default on CPUs with fp16 arithmetic (ARMv8.2:
        # Pi 5, phones) is fp16 storage and arithmetic, which changed 2.3% of top-1 answers of
        # a digits student under emulation
        for option in FP16_OPTIONS:
            setattr(self.net.opt, option, False)
        self.net.opt.use_int8_inference = True  # ncnn's default: the layers with int8 scales run in int8
        if self.net.load_param(str(self.path)) != 0 or self.net.load_model(str(self.path.with_suffix(".bin"))) != 0:
            raise RuntimeError(f"ncnn could not load {self.path} and its .bin")
        self.size = json.loads(self.metadata()["input_size"])

    def run(self, batch: np.ndarray) -> np.ndarray:
        # pnnx names the graph's input and output in0 and out0; ncnn takes one CHW image at a time
        outputs = []
        for image in np.asarray(batch, np.float32):
            extractor = self.net.create_extractor()
            extractor.input("in0", self._ncnn.Mat(np.ascontiguousarray(image)).clone())
            _, out = extractor.extract("out0")
            outputs.append(np.array(out, np.float32).reshape(1, -1))
        return np.concatenate(outputs)

    def input_shape(self) -> list[int]:
        return [1, 3, *self.size]

    def executed_precision(self) -> dict:
        # a layer's int8 scales are its param's key 8 (int8_scale_term)
        layers = [line.split() for line in self.path.read_text().splitlines()[2:]]
        kinds = [
            "int8" if any(f.startswith("8=") for f in fields) else "fp32" for fields in layers if fields[0] in CONVS
        ]
        return summarize_convs(kinds)

    def metadata(self) -> dict[str, str]:
        return json.loads((self.path.parent / METADATA_FILE).read_text())


register("ncnn", _version)(NcnnSession)
