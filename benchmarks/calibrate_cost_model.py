"""Fits the boards' cost-model parameters (targets/rpi4.toml, rpi5.toml, jetson-orin-cpu.toml)
to published measurements and prints them with the fit's error, in-sample and leave-one-out.

python benchmarks/calibrate_cost_model.py

Measurements, batch 1, per 224x224 frame (squeezenet 227x227), on the board's CPU:
- Raspberry Pi 4: PyTorch tutorial "Real Time Inference on Raspberry Pi 4 and 5"
  (docs.pytorch.org/tutorials/intermediate/realtime_rpi.html), its Raspberry Pi 4 table, PyTorch,
  4 threads; models with a qnnpack pre-trained variant ran int8, the others fp32.
- Raspberry Pi 5: the same tutorial's ~41 fps end to end for int8 mobilenet_v2 (one figure,
  capture and preprocessing included): the Pi 4 fit scaled by one factor.
- Jetson AGX Orin CPU (12x Cortex-A78AE @ 2.2 GHz): ncnn's benchmark/README.md
  (github.com/Tencent/ncnn/blob/master/benchmark/README.md), "NVIDIA Jetson AGX Orin" section,
  `./benchncnn 64 4 0 -1 0` (4 threads, CPU only), avg ms; the models that are torchvision's
  architectures (not ncnn's mobilenet v1, shufflenet v1 or mobilenet_v3, whose variant it does
  not name). ncnn's fp32 models may run in fp16 arithmetic on these ARMv8.2 cores.
Graphs: torchvision's architectures exported to ONNX with random weights (cost does not depend
on the weights).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torchvision
from scipy.optimize import minimize_scalar, nnls

from edgekd.costmodel import CostModel, Layer, estimate_ms, layers


@dataclass
class Measurements:
    board: str
    fp32_ms: dict[str, float]
    int8_ms: dict[str, float]


BOARDS = [
    Measurements(
        "rpi4",
        fp32_ms={
            "resnet18": 100.3,
            "resnet50": 225.2,
            "googlenet": 132.0,
            "shufflenet_v2_x0_5": 18.2,
            "shufflenet_v2_x1_0": 37.7,
            "shufflenet_v2_x1_5": 56.3,
            "shufflenet_v2_x2_0": 82.7,
        },
        int8_ms={"mobilenet_v2": 26.4, "mobilenet_v3_large": 30.7},
    ),
    Measurements(
        "jetson-orin-cpu",
        fp32_ms={
            "squeezenet1_1": 4.61,
            "mobilenet_v2": 5.15,
            "shufflenet_v2_x1_0": 4.18,
            "efficientnet_b0": 9.60,
            "googlenet": 15.68,
            "resnet18": 10.35,
            "resnet50": 26.91,
        },
        int8_ms={"resnet18": 17.03, "resnet50": 32.38},
    ),
]
RPI5_INT8_FRAME_MS = {"mobilenet_v2": 1000 / 41}


def graph(name: str, folder: Path) -> list[Layer]:
    kwargs = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
    model = getattr(torchvision.models, name)(weights=None, **kwargs).eval()
    path = folder / f"{name}.onnx"
    size = 227 if name.startswith("squeezenet") else 224
    torch.onnx.export(model, torch.zeros(1, 3, size, size), str(path), dynamo=False, opset_version=17)
    return layers(str(path))


def as_int8(graph: list[Layer]) -> list[Layer]:
    """The same graph run by int8 kernels: compute layers read and write one byte per value."""
    return [replace(g, int8=True, bytes=g.bytes / 4) if g.kind != "elementwise" else g for g in graph]


def features(graph: list[Layer], int8_speedup: float = 1.0) -> np.ndarray:
    """Seconds per unit of each parameter's inverse: dense FLOPs, depthwise FLOPs, bytes, layers."""

    def flops(kind):
        return sum(g.flops / (int8_speedup if g.int8 else 1.0) for g in graph if g.kind == kind)

    return np.array([flops("conv") / 1e9, flops("depthwise") / 1e9, sum(g.bytes for g in graph) / 1e9, len(graph)])


def board(coef: np.ndarray, int8_speedup: float = 1.0) -> CostModel:
    """From fitted seconds-per-unit coefficients to rates (a zero coefficient: that term costs nothing)."""
    conv, dw, bw, overhead = coef
    return CostModel(
        conv_gflops=1 / conv if conv > 0 else float("inf"),
        depthwise_gflops=1 / dw if dw > 0 else float("inf"),
        bandwidth_gbs=1 / bw if bw > 0 else float("inf"),
        overhead_us=overhead * 1e6,
        int8_speedup=int8_speedup,
        threads=4,
        source="fit",
        calibration="fit",
    )


def fit(graphs: dict[str, list[Layer]], measured: dict[str, float]) -> np.ndarray:
    """Non-negative least squares on relative error: each model weighs the same."""
    names = list(measured)
    a = np.stack([features(graphs[n]) / (measured[n] / 1000) for n in names])
    return nnls(a, np.ones(len(names)))[0]


def calibrate(m: Measurements, graphs: dict[str, list[Layer]]) -> CostModel:
    """Fits fp32 rates, then one int8 factor on the int8 measurements; prints the errors."""
    coef = fit(graphs, m.fp32_ms)
    int8_graphs = {n: as_int8(graphs[n]) for n in m.int8_ms}

    def int8_error(log_speedup: float) -> float:
        b = board(coef, float(np.exp(log_speedup)))
        return sum((np.log(estimate_ms(int8_graphs[n], b)) - np.log(ms)) ** 2 for n, ms in m.int8_ms.items())

    speedup = float(np.exp(minimize_scalar(int8_error, bounds=(-2, 3), method="bounded").x))
    fitted = board(coef, speedup)
    print(f"{m.board}:", fitted.model_dump(exclude={"source", "calibration", "threads"}))
    rows = [(n, "fp32", ms, graphs[n]) for n, ms in m.fp32_ms.items()]
    rows += [(n, "int8", ms, int8_graphs[n]) for n, ms in m.int8_ms.items()]
    errors = []
    for n, precision, ms, g in rows:
        est = estimate_ms(g, fitted)
        errors.append(abs(est - ms) / ms)
        print(
            f"  {n:22} {precision} measured {ms:7.2f} ms  estimated {est:7.2f} ms  error {100 * (est - ms) / ms:+6.1f}%"
        )
    print(f"  in-sample mean |error| {100 * np.mean(errors):.1f}%, max {100 * np.max(errors):.1f}%")
    loo = []
    for held in m.fp32_ms:
        rest = {n: ms for n, ms in m.fp32_ms.items() if n != held}
        est = estimate_ms(graphs[held], board(fit(graphs, rest)))
        loo.append(abs(est - m.fp32_ms[held]) / m.fp32_ms[held])
    print(f"  fp32 leave-one-out mean |error| {100 * np.mean(loo):.1f}%, max {100 * np.max(loo):.1f}%")
    return fitted


def main() -> None:
    names = {n for m in BOARDS for n in [*m.fp32_ms, *m.int8_ms]}
    with tempfile.TemporaryDirectory() as tmp:
        graphs = {n: graph(n, Path(tmp)) for n in sorted(names)}
    fitted = {m.board: calibrate(m, graphs) for m in BOARDS}
    # Raspberry Pi 5: the Pi 4 fit scaled by one factor, from its single published figure
    rpi4 = fitted["rpi4"]
    scale = estimate_ms(as_int8(graphs["mobilenet_v2"]), rpi4) / RPI5_INT8_FRAME_MS["mobilenet_v2"]
    rpi5 = rpi4.model_copy(
        update={
            "conv_gflops": rpi4.conv_gflops * scale,
            "depthwise_gflops": rpi4.depthwise_gflops * scale,
            "bandwidth_gbs": rpi4.bandwidth_gbs * scale,
            "overhead_us": rpi4.overhead_us / scale,
        }
    )
    print(f"rpi5 (rpi4 x {scale:.3f}):", rpi5.model_dump(exclude={"source", "calibration", "threads"}))


if __name__ == "__main__":
    main()
