"""Where int8 loses time, per operator, in each runtime's own profiler (issue: latency-aware int8
placement, item 1, on the host's kernels).

For each model (random weights with BatchNorm statistics set from data, 224x224, batch 1) the
fp32 artifact and edgekd's int8 (NNCF QDQ in the target's scheme, as `int8_vs_ptq.py` makes
it) run `--runs` times with profiling on:
  onnxruntime: the session profiler's per-node kernel times, summed by operator type;
  OpenVINO:    the CPU plugin's performance counters, summed by (layer type, kernel), so that
               the kernel name shows whether a layer ran int8 (`..._I8`) or float (`..._f32`).
Prints per runtime and model the total profiled time of fp32 and int8 and the operators that
cost most, each with its count. Figures are this host's kernels only: ARM placement comes from
ARM's instruction profiles, never from these.

    python benchmarks/int8_operators.py [--models mobilenet_v3_small mobilenet_v2] [--runs 200]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from int8_vs_ptq import trained_like  # benchmarks/ is on sys.path when this script runs

from edgekd.formats import Int8Inputs
from edgekd.formats.onnx import torch2onnx
from edgekd.formats.openvino import torch2openvino
from edgekd.quantizers.nncf import insert_fake_quant, qdq_export_mode
from edgekd.reporting.environment import cpu_name
from edgekd.stages.export import ExportConfig
from edgekd.targets import load_target

SIZE = 224
WARMUP = 20


def artifacts(name: str, target: str, folder: Path) -> dict[str, dict[str, str]]:
    """{runtime: {"fp32": path, "int8": path}} for one model."""
    model = trained_like(name, SIZE)
    calibration = [np.random.default_rng(i).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32) for i in range(8)]
    flavour = load_target(target).int8
    quantized = qdq_export_mode(insert_fake_quant(model, flavour, [torch.from_numpy(c) for c in calibration]))
    meta = {"input_size": json.dumps([SIZE, SIZE]), "precision": "fp32"}
    int8_meta = meta | {"precision": "int8", "int8": json.dumps(flavour.model_dump())}
    opset = ExportConfig().opset
    inputs = Int8Inputs(np.concatenate(calibration), flavour)
    return {
        "onnxruntime": {
            "fp32": str(torch2onnx(model, folder / "fp32.onnx", meta, opset)),
            "int8": str(torch2onnx(quantized, folder / "int8.onnx", int8_meta, opset, inputs)),
        },
        "openvino": {
            "fp32": str(torch2openvino(model, folder / "fp32_openvino", meta, opset)),
            "int8": str(torch2openvino(quantized, folder / "int8_openvino", int8_meta, opset)),
        },
    }


def onnxruntime_operators(path: str, image: np.ndarray, threads: int, runs: int) -> tuple[Counter, Counter]:
    """(ms per inference, nodes) by operator type, from onnxruntime's session profiler; the
    profile starts with the session, so the first `WARMUP` runs' events are left out."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.gettempdir()) / "edgekd-int8-operators")
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: image}
    for _ in range(WARMUP + runs):
        session.run(None, feed)
    trace = session.end_profiling()
    events = json.loads(Path(trace).read_text())
    os.unlink(trace)
    starts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e["name"] == "model_run")
    times, nodes = Counter(), Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time") and event["ts"] >= starts[WARMUP]:
            times[event["args"]["op_name"]] += event["dur"] / 1000 / runs
            nodes[event["args"]["op_name"]] += 1 / runs
    return times, Counter({op: round(n) for op, n in nodes.items()})


def openvino_operators(path: str, image: np.ndarray, threads: int, runs: int) -> tuple[Counter, Counter]:
    """(ms per inference, layers) by (layer type, kernel), from OpenVINO's performance counters."""
    import openvino as ov

    config = {"INFERENCE_NUM_THREADS": threads, "PERF_COUNT": True, "INFERENCE_PRECISION_HINT": "f32"}
    request = ov.Core().compile_model(path, "CPU", config).create_infer_request()
    for _ in range(WARMUP):
        request.infer({0: image})
    times, layers = Counter(), Counter()
    for _ in range(runs):
        request.infer({0: image})
        for layer in request.get_profiling_info():
            if layer.status == layer.Status.EXECUTED:
                times[f"{layer.node_type} ({layer.exec_type})"] += layer.real_time.total_seconds() * 1e3 / runs
    for layer in request.get_profiling_info():
        if layer.status == layer.Status.EXECUTED:
            layers[f"{layer.node_type} ({layer.exec_type})"] += 1
    return times, layers


PROFILERS = {"onnxruntime": onnxruntime_operators, "openvino": openvino_operators}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["mobilenet_v3_small", "mobilenet_v2"])
    parser.add_argument("--target", default="x86", help="whose int8 scheme the QDQ graph takes")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=8, help="operators shown per artifact")
    args = parser.parse_args()
    print(f"host: {cpu_name()}, {args.threads} threads, batch 1, {SIZE}x{SIZE}, {args.runs} profiled runs")
    image = np.random.default_rng(0).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
    for name in args.models:
        with tempfile.TemporaryDirectory() as scratch:
            for runtime, paths in artifacts(name, args.target, Path(scratch)).items():
                profiled = {p: PROFILERS[runtime](path, image, args.threads, args.runs) for p, path in paths.items()}
                totals = {p: sum(times.values()) for p, (times, _) in profiled.items()}
                print(f"\n{name}, {runtime}: fp32 {totals['fp32']:.3f} ms, int8 {totals['int8']:.3f} ms "
                      f"(int8 / fp32 {totals['int8'] / totals['fp32']:.2f}), profiled kernel time")  # fmt: skip
                for precision, (times, counts) in profiled.items():
                    print(f"  {precision}:")
                    for op, ms in times.most_common(args.top):
                        print(f"    {op:48s} {ms:7.3f} ms  {ms / totals[precision]:4.0%}  x{counts[op]}")


if __name__ == "__main__":
    main()
