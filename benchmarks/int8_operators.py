"""Where int8 loses time, per operator, in each runtime's own profiler (issue: latency-aware int8
placement, item 1, on the host's kernels).

For each model (random weights with BatchNorm statistics set from data, 224x224, batch 1) the
fp32 artifact and edgekd's int8 (NNCF QDQ in the target's scheme, as `int8_vs_ptq.py` makes
it) run `--runs` times with profiling on:
  onnxruntime: the session profiler's per-node kernel times, summed by operator type;
  OpenVINO:    the CPU plugin's performance counters, summed by (layer type, kernel), so that
               the kernel name shows whether a layer ran int8 (`..._I8`) or float (`..._f32`).
Prints per runtime and model the total profiled time of fp32 and int8, the operators that cost
most, each with its count, and (OpenVINO) the convolutions whose int8 kernel is slower than
their fp32 one. Figures are this host's kernels only: ARM placement comes from
ARM's instruction profiles, never from these.

With `--float-depthwise`, a third artifact keeps the depthwise convolutions in float (NNCF's
ignored scope, `insert_fake_quant(keep_float=...)`): the whole artifact's time, not the sum of
its layers', says whether keeping a layer that is slower in int8 in float pays.

With `--delegation`, the XNNPACK runtimes instead: for fp32 and edgekd's int8 (the PT2E QAT
graph, converted untrained), how many XNNPACK partitions LiteRT's delegate and ExecuTorch's
partitioner make, and which operators they leave to the runtime's own kernels.

    python benchmarks/int8_operators.py [--models mobilenet_v3_small mobilenet_v2] [--runs 200]
                                        [--float-depthwise] [--delegation]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from int8_vs_ptq import edgekd_pt2e_int8, trained_like  # benchmarks/ is on sys.path when this script runs

from edgekd.formats import Int8Inputs
from edgekd.formats.onnx import torch2onnx
from edgekd.formats.openvino import torch2openvino
from edgekd.quantizers.nncf import insert_fake_quant, qdq_export_mode
from edgekd.reporting.environment import cpu_name
from edgekd.stages.export import ExportConfig
from edgekd.targets import load_target

SIZE = 224
WARMUP = 20


def artifacts(name: str, target: str, folder: Path, float_depthwise: bool) -> dict[str, dict[str, str]]:
    """{runtime: {"fp32": path, "int8": path}} for one model, and "int8, depthwise in float"
    (NNCF's ignored scope) with `float_depthwise`."""
    model = trained_like(name, SIZE)
    calibration = [np.random.default_rng(i).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32) for i in range(8)]
    flavour = load_target(target).int8
    meta = {"input_size": json.dumps([SIZE, SIZE]), "precision": "fp32"}
    int8_meta = meta | {"precision": "int8", "int8": json.dumps(flavour.model_dump())}
    opset = ExportConfig().opset
    inputs = Int8Inputs(np.concatenate(calibration), flavour)
    depthwise = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    placements = {"int8": [], "int8, depthwise in float": depthwise} if float_depthwise else {"int8": []}
    paths = {
        "onnxruntime": {"fp32": str(torch2onnx(model, folder / "fp32.onnx", meta, opset))},
        "openvino": {"fp32": str(torch2openvino(model, folder / "fp32_openvino", meta, opset))},
    }
    for n, (label, keep_float) in enumerate(placements.items()):
        calibrated = [torch.from_numpy(c) for c in calibration]
        quantized = qdq_export_mode(insert_fake_quant(model, flavour, calibrated, keep_float=keep_float))
        paths["onnxruntime"][label] = str(torch2onnx(quantized, folder / f"int8_{n}.onnx", int8_meta, opset, inputs))
        paths["openvino"][label] = str(torch2openvino(quantized, folder / f"int8_{n}_openvino", int8_meta, opset))
    return paths


class Profiled(NamedTuple):
    operators: Counter  # ms per inference by operator type (OpenVINO: and kernel)
    counts: Counter  # nodes of each
    convolutions: dict[str, tuple[str, float]]  # layer name: (kernel, ms), where names match across precisions


def onnxruntime_operators(path: str, image: np.ndarray, threads: int, runs: int) -> Profiled:
    """By operator type, from onnxruntime's session profiler; the profile starts with the
    session, so the first `WARMUP` runs' events are left out. No layers: onnxruntime names a
    fused fp32 node after its last activation and an int8 one after its convolution."""
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
    return Profiled(times, Counter({op: round(n) for op, n in nodes.items()}), {})


def openvino_operators(path: str, image: np.ndarray, threads: int, runs: int) -> Profiled:
    """By (layer type, kernel) and per convolution layer, from OpenVINO's performance counters
    (a layer keeps its ONNX node's name in both precisions)."""
    import openvino as ov

    config = {"INFERENCE_NUM_THREADS": threads, "PERF_COUNT": True, "INFERENCE_PRECISION_HINT": "f32"}
    request = ov.Core().compile_model(path, "CPU", config).create_infer_request()
    for _ in range(WARMUP):
        request.infer({0: image})
    times, layers, kernels = Counter(), Counter(), {}
    for _ in range(runs):
        request.infer({0: image})
        for layer in request.get_profiling_info():
            if layer.status == layer.Status.EXECUTED:
                times[f"{layer.node_type} ({layer.exec_type})"] += layer.real_time.total_seconds() * 1e3 / runs
                if layer.node_type.endswith("Convolution"):
                    layers[layer.node_name] += layer.real_time.total_seconds() * 1e3 / runs
                    kernels[layer.node_name] = layer.exec_type
    counts = Counter(f"{layer.node_type} ({layer.exec_type})" for layer in request.get_profiling_info()
                     if layer.status == layer.Status.EXECUTED)  # fmt: skip
    return Profiled(times, counts, {name: (kernels[name], ms) for name, ms in layers.items()})


def slower_in_int8(profiled: dict[str, Profiled]) -> list[str]:
    """The convolutions whose int8 kernel takes longer than their fp32 one, one line each."""
    fp32, int8 = profiled["fp32"].convolutions, profiled["int8"].convolutions
    return [
        f"{name.removesuffix('/WithoutBiases')}: {fp32[name][1]:.3f} ms {fp32[name][0]} -> {ms:.3f} ms {kernel}"
        for name, (kernel, ms) in int8.items()
        if name in fp32 and ms > fp32[name][1]
    ]


PROFILERS = {"onnxruntime": onnxruntime_operators, "openvino": openvino_operators}


def profile_each(runtime: str, paths: dict[str, str], image: np.ndarray, args) -> dict[str, Profiled]:
    return {label: PROFILERS[runtime](path, image, args.threads, args.runs) for label, path in paths.items()}


def medians(rounds: list[dict[str, Profiled]]) -> str:
    """Each artifact's median total and median ratio to fp32 over the rounds."""
    totals = [{label: sum(found.operators.values()) for label, found in run.items()} for run in rounds]
    return ", ".join(
        f"{label} {statistics.median(t[label] for t in totals):.3f} ms "
        f"({statistics.median(t[label] / t['fp32'] for t in totals):.2f} of fp32)"
        for label in totals[0]
    )


def litert_outside_xnnpack(path: Path) -> tuple[int, Counter]:
    """(XNNPACK partitions, operators LiteRT runs itself): the interpreter lists each partition as
    a DELEGATE node beside the nodes it replaced; a node runs outside when its output reaches a
    partition's input, or the model's output, without coming out of a partition."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    nodes = interpreter._get_ops_details()
    partitions = [n for n in nodes if n["op_name"] == "DELEGATE"]
    made = {t for p in partitions for t in p["outputs"]}
    producer = {t: n for n in nodes if n["op_name"] != "DELEGATE" for t in n["outputs"]}
    wanted = [t for p in partitions for t in p["inputs"]] + [d["index"] for d in interpreter.get_output_details()]
    outside: dict[int, str] = {}
    while wanted:
        tensor = wanted.pop()
        node = producer.get(tensor)
        if node is not None and tensor not in made and node["index"] not in outside:
            outside[node["index"]] = node["op_name"]
            wanted += list(node["inputs"])
    return len(partitions), Counter(outside.values())


def executorch_outside_xnnpack(model: torch.nn.Module, meta: dict[str, str]) -> tuple[int, Counter]:
    """(XNNPACK partitions, operators left to ExecuTorch's portable kernels), from its own
    delegation summary of the program edgekd's ExecuTorch export lowers."""
    from executorch.devtools.backend_debug import get_delegation_info

    from edgekd.formats.executorch import lower_to_xnnpack

    info = get_delegation_info(lower_to_xnnpack(model, meta).exported_program().graph_module)
    rows = info.get_operator_delegation_dataframe().set_index("op_type")["occurrences_in_non_delegated_graphs"]
    return info.num_delegated_subgraphs, Counter({op: n for op, n in rows.items() if n and op != "Total"})


def delegation(name: str, target: str, folder: Path) -> None:
    from edgekd.formats.tflite import torch2tflite

    model = trained_like(name, SIZE)
    calibration = [torch.from_numpy(np.random.default_rng(i).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32))
                   for i in range(8)]  # fmt: skip
    int8 = edgekd_pt2e_int8(model, calibration, load_target(target).int8)
    for precision, graph in (("fp32", model), ("int8", int8)):
        meta = {"input_size": json.dumps([SIZE, SIZE]), "precision": precision}
        path = torch2tflite(graph, folder / f"{precision}.tflite", meta, ExportConfig().opset)
        for runtime, (partitions, outside) in (
            ("litert", litert_outside_xnnpack(path)), ("executorch", executorch_outside_xnnpack(graph, meta))
        ):  # fmt: skip
            left = ", ".join(f"{op} x{n}" for op, n in outside.most_common()) or "nothing"
            print(f"{name}, {runtime} {precision}: {partitions} XNNPACK partition(s); outside XNNPACK: {left}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["mobilenet_v3_small", "mobilenet_v2"])
    parser.add_argument("--target", default="x86", help="whose int8 scheme the QDQ graph takes")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=8, help="operators shown per artifact")
    parser.add_argument(
        "--float-depthwise", action="store_true", help="also int8 with the depthwise convolutions kept in float"
    )
    parser.add_argument("--delegation", action="store_true", help="XNNPACK partitions of LiteRT and ExecuTorch instead")
    args = parser.parse_args()
    if args.delegation:
        for name in args.models:
            with tempfile.TemporaryDirectory() as scratch:
                delegation(name, args.target, Path(scratch))
        return
    print(f"host: {cpu_name()}, {args.threads} threads, batch 1, {SIZE}x{SIZE}, {args.runs} profiled runs")
    image = np.random.default_rng(0).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
    for name in args.models:
        with tempfile.TemporaryDirectory() as scratch:
            for runtime, paths in artifacts(name, args.target, Path(scratch), args.float_depthwise).items():
                # each round profiles every artifact once, so drift hits them alike
                rounds = [profile_each(runtime, paths, image, args) for _ in range(args.rounds)]
                print(f"\n{name}, {runtime}, profiled kernel time, median of {args.rounds} rounds: {medians(rounds)}")
                profiled = rounds[-1]
                totals = {p: sum(found.operators.values()) for p, found in profiled.items()}
                for precision, found in profiled.items():
                    print(f"  {precision}:")
                    for op, ms in found.operators.most_common(args.top):
                        print(f"    {op:48s} {ms:7.3f} ms  {ms / totals[precision]:4.0%}  x{found.counts[op]}")
                if profiled["int8"].convolutions:
                    slower = slower_in_int8(profiled)
                    print(f"  convolutions slower in int8: {len(slower)} of {len(profiled['int8'].convolutions)}")
                    for line in slower:
                        print(f"    {line}")


if __name__ == "__main__":
    main()
