"""onnxruntime, CPU execution provider."""

from __future__ import annotations

import os
import tempfile
from collections import Counter

import numpy as np

from edgekd.runtime.base import Session, register, summarize_convs


def _version() -> str | None:
    try:
        import onnxruntime

        return onnxruntime.__version__
    except ImportError:
        return None


class OrtSession(Session):
    runtime = "onnxruntime"
    package = "onnxruntime"
    providers = ["CPUExecutionProvider"]
    inspect_graph = True

    def __init__(self, path: str, threads: int, reference: bool = False, spinning: bool = True):
        """`reference`: no graph optimization, so Q/DQ pairs run as written, in float: the
        quantized arithmetic every conforming runtime implements, free of one CPU's kernels.
        `spinning=False`: idle workers sleep instead of polling (instruction profiles count work)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        if not spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if reference:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        self._optimized: tempfile.TemporaryDirectory | None = None
        if self.inspect_graph:  # the optimized graph tells which kernels onnxruntime really runs
            # a folder removed with the session (or at exit), whether or not the graph is read
            self._optimized = tempfile.TemporaryDirectory(prefix="edgekd-ort-")
            options.optimized_model_filepath = os.path.join(self._optimized.name, "optimized.onnx")
        self.session = ort.InferenceSession(path, options, providers=self.providers)
        self.input_name = self.session.get_inputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch.astype(np.float32, copy=False)})[0]

    def input_shape(self) -> list[int]:
        shape = self.session.get_inputs()[0].shape
        return [1] + [int(d) for d in shape[1:]]

    def executed_precision(self) -> dict:
        if self._optimized is None:
            return {}
        import onnx

        optimized = os.path.join(self._optimized.name, "optimized.onnx")
        ops = Counter(node.op_type for node in onnx.load(optimized, load_external_data=False).graph.node)
        kinds = []
        for op, count in ops.items():
            if op in ("QLinearConv", "ConvInteger"):
                kinds += ["int8"] * count
            elif op in ("Conv", "FusedConv", "NhwcFusedConv"):
                kinds += ["fp32"] * count
        return summarize_convs(kinds) | {"optimized_ops": dict(ops.most_common())}


register("onnxruntime", _version)(OrtSession)
