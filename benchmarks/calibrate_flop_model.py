"""Fits the boards' FLOP cost-model parameters (the `[cost_model]` of targets/rpi4.toml, rpi5.toml,
jetson-orin-cpu.toml: the fallback estimate when ARM instructions cannot be profiled) to published
measurements and prints them with the fit's error, in-sample and leave-one-out.

python benchmarks/calibrate_flop_model.py

Measurements: ncnn's benchmark/README.md (github.com/Tencent/ncnn/blob/master/benchmark/README.md,
commit a4d2ea1d, July 2026), `benchncnn` at 4 threads, CPU only, avg ms, 224x224 (squeezenet
227x227), batch 1, sections "Raspberry Pi 4 Model B", "Raspberry Pi 5" (`benchncnn 10 4 0 -1
-1`) and "NVIDIA Jetson AGX Orin" (`benchncnn 64 4 0 -1 0`). Only the models that are
torchvision's architectures (not ncnn's mobilenet v1, shufflenet v1, or mobilenet_v3, whose
variant it does not name). The runtime ratios that turn ncnn's latency into onnxruntime's and
OpenVINO's are in edgekd/targets/costmodel.py (RUNTIME_RATIOS), with their sources.
Graphs: torchvision's architectures exported to ONNX with random weights (cost does not depend
on the weights).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
import torchvision
from scipy.optimize import nnls

from edgekd.targets.costmodel import RUNTIME_RATIOS, CostModel, Layer, band, layers, ncnn_ms

MODELS = ["squeezenet1_1", "mobilenet_v2", "shufflenet_v2_x1_0", "efficientnet_b0", "googlenet", "resnet18", "resnet50"]
# ncnn's names for them, in MODELS' order
NCNN_FP32_MS = {
    "rpi4": (46.65, 61.88, 24.56, 74.19, 114.35, 123.12, 262.83),
    "rpi5": (7.38, 10.52, 3.39, 12.33, 25.35, 19.96, 46.21),
    "jetson-orin-cpu": (4.61, 5.15, 4.18, 9.60, 15.68, 10.35, 26.91),
}
# context only (docs/cost-model.md): ncnn's int8 over its fp32 on the same board
NCNN_INT8_MS = {
    "rpi4": {"squeezenet1_1": 42.59, "googlenet": 101.25, "resnet18": 83.92, "resnet50": 196.65},
    "rpi5": {"squeezenet1_1": 7.21, "googlenet": 24.12, "resnet18": 16.74, "resnet50": 40.75},
    "jetson-orin-cpu": {"resnet18": 17.03, "resnet50": 32.38},
}


def graph(name: str, folder: Path) -> list[Layer]:
    kwargs = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
    model = getattr(torchvision.models, name)(weights=None, **kwargs).eval()
    path = folder / f"{name}.onnx"
    size = 227 if name.startswith("squeezenet") else 224
    torch.onnx.export(model, torch.zeros(1, 3, size, size), str(path), dynamo=False, opset_version=17)
    return layers(str(path))


def features(graph: list[Layer]) -> np.ndarray:
    """Seconds per unit of each parameter's inverse: dense FLOPs, depthwise FLOPs, bytes, layers."""

    def flops(kind):
        return sum(g.flops for g in graph if g.kind == kind)

    return np.array([flops("conv") / 1e9, flops("depthwise") / 1e9, sum(g.bytes for g in graph) / 1e9, len(graph)])


def board(coef: np.ndarray, loo_error: float = 0.0) -> CostModel:
    """From fitted seconds-per-unit coefficients to rates (a zero coefficient: that term costs nothing)."""
    conv, dw, bw, overhead = coef
    return CostModel(
        board="fit",
        conv_gflops=1 / conv if conv > 0 else float("inf"),
        depthwise_gflops=1 / dw if dw > 0 else float("inf"),
        bandwidth_gbs=1 / bw if bw > 0 else float("inf"),
        overhead_us=overhead * 1e6,
        threads=4,
        loo_error=loo_error,
        source="fit",
        calibration="fit",
    )


def fit(graphs: dict[str, list[Layer]], measured: dict[str, float]) -> np.ndarray:
    """Non-negative least squares on relative error: each model weighs the same."""
    names = list(measured)
    a = np.stack([features(graphs[n]) / (measured[n] / 1000) for n in names])
    return nnls(a, np.ones(len(names)))[0]


def held_out(name: str, graphs: dict[str, list[Layer]]) -> dict[str, float]:
    """Each model's relative error when the fit is made without it."""
    measured = dict(zip(MODELS, NCNN_FP32_MS[name]))
    loo = {}
    for held in measured:
        rest = {n: ms for n, ms in measured.items() if n != held}
        loo[held] = ncnn_ms(graphs[held], board(fit(graphs, rest))) / measured[held] - 1
    return loo


def loo(name: str, graphs: dict[str, list[Layer]]) -> float:
    """The leave-one-out mean |relative error| on the board's seven figures."""
    return float(np.mean(np.abs(list(held_out(name, graphs).values()))))


def calibrate(name: str, graphs: dict[str, list[Layer]]) -> None:
    measured = dict(zip(MODELS, NCNN_FP32_MS[name]))
    loo = held_out(name, graphs)
    loo_mean = float(np.mean(np.abs(list(loo.values()))))
    fitted = board(fit(graphs, measured), loo_mean)
    errors = {n: ncnn_ms(graphs[n], fitted) / ms - 1 for n, ms in measured.items()}
    in_mean, in_max = np.mean(np.abs(list(errors.values()))), np.max(np.abs(list(errors.values())))
    loo_max = np.max(np.abs(list(loo.values())))
    print(f"\n{name}: ncnn fp32, 4 threads, {len(measured)} measurements\n")
    print("| model | measured ms | fitted ms | error | leave-one-out error |\n| --- | --- | --- | --- | --- |")
    for n, ms in measured.items():
        fitted_ms = ncnn_ms(graphs[n], fitted)
        print(f"| {n} | {ms:.2f} | {fitted_ms:.2f} | {errors[n]:+.1%} | {loo[n]:+.1%} |")
    print(
        f"\nin-sample mean |error| {in_mean:.1%} (max {in_max:.1%}); leave-one-out {loo_mean:.1%} (max {loo_max:.1%})"
    )
    ratios = {n: NCNN_INT8_MS[name][n] / measured[n] for n in NCNN_INT8_MS[name]}
    print("ncnn int8 / fp32 latency:", ", ".join(f"{n} {r:.2f}" for n, r in ratios.items()))
    print("bands:", ", ".join(f"{rt} ±{band(fitted, rt):.0%}" for rt in RUNTIME_RATIOS))
    print("\n[cost_model]")
    for key in ("conv_gflops", "depthwise_gflops", "bandwidth_gbs", "overhead_us"):
        value = getattr(fitted, key)
        print(f"{key} = {'inf' if value == float('inf') else f'{value:.4g}'}")
    print(f"loo_error = {loo_mean:.3f}")
    calibration = (
        f"{len(measured)} ncnn fp32 measurements, 4 threads: mean |error| {in_mean:.1%} (max {in_max:.1%}); "
        f"leave-one-out mean {loo_mean:.1%} (max {loo_max:.1%})"
    )
    print(f'calibration = "{calibration}"')


def main() -> None:
    for runtime, r in RUNTIME_RATIOS.items():
        spread = "one pair" if r.spread is None else f"mean |deviation| {r.spread:.1%}"
        print(f"{runtime} / ncnn on {r.board}: median {r.ratio:.2f} of {len(r.pairs)} pairs ({spread})")
    with tempfile.TemporaryDirectory() as tmp:
        graphs = {n: graph(n, Path(tmp)) for n in MODELS}
    for name in NCNN_FP32_MS:
        calibrate(name, graphs)


if __name__ == "__main__":
    main()
