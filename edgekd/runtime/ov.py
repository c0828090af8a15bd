"""OpenVINO, CPU plugin."""

from __future__ import annotations

from collections import Counter

import numpy as np

from edgekd.runtime.base import Session, register, summarize_convs


def _version() -> str | None:
    try:
        import openvino

        return openvino.__version__.split("-")[0]
    except ImportError:
        return None


class OvSession(Session):
    runtime = "openvino"
    package = "openvino"

    def __init__(self, path: str, threads: int):
        import openvino as ov

        core = ov.Core()
        model = core.read_model(path)
        if model.inputs[0].partial_shape.is_dynamic:
            model.reshape([1] + [d.get_length() for d in model.inputs[0].partial_shape[1:]])
        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()

    def run(self, batch: np.ndarray) -> np.ndarray:
        outputs = [self.request.infer({0: sample[None]})[0].copy() for sample in batch.astype(np.float32)]
        return np.concatenate(outputs)

    def input_shape(self) -> list[int]:
        return [int(d) for d in self.compiled.inputs[0].shape]

    def pool_threads(self) -> int | None:
        # OpenVINO takes at most the CPUs the process may use, whatever INFERENCE_NUM_THREADS asks
        return int(self.compiled.get_property("INFERENCE_NUM_THREADS"))

    def executed_precision(self) -> dict:
        """Each convolution's runtime precision, and the runtime graph's layers as "type precision"
        counts (constants left out), so two artifacts can be compared kernel for kernel."""
        kinds, layers = [], Counter()
        for op in self.compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            layer, precision = info["layerType"].astype(str), info["runtimePrecision"].astype(str)
            if layer == "Convolution":
                kinds.append("int8" if precision in ("u8", "i8") else "fp32")
            if layer != "Const":
                layers[f"{layer} {precision}"] += 1
        return summarize_convs(kinds) | {"optimized_ops": dict(layers.most_common())}


register("openvino", _version)(OvSession)
