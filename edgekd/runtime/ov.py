"""OpenVINO, CPU plugin."""

from __future__ import annotations

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

    def executed_precision(self) -> dict:
        kinds = []
        for op in self.compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            if info["layerType"].astype(str) == "Convolution":
                kinds.append("int8" if info["runtimePrecision"].astype(str) in ("u8", "i8") else "fp32")
        return summarize_convs(kinds)


register("openvino", _version)(OvSession)
