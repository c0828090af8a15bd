"""edgekd's int8 artifacts against each runtime's own post-training quantization, side by side.

Latency. For each model (torchvision architecture, random weights with BatchNorm statistics set
from data: latency does not depend on the weights) at 224x224, batch 1:
  onnxruntime: fp32; quantize_static (QDQ, per-channel, after quant_pre_process) with s8s8,
               u8s8 and u8s8 + reduce_range; edgekd's int8 ONNX (BatchNorm folded, NNCF QDQ)
  OpenVINO:    fp32 IR; NNCF PTQ of that IR; edgekd's int8 IR
  ExecuTorch:  (with edgekd[executorch]) fp32 .pte; PT2E PTQ with the XNNPACK quantizer; edgekd's
               int8 .pte (PT2E QAT graph, converted untrained: latency does not depend on the weights)
  LiteRT:      (with edgekd[tflite]) fp32 .tflite; PT2E PTQ with litert-torch's own quantizer;
               edgekd's int8 .tflite (the same PT2E QAT graph as ExecuTorch's)
  ncnn:        (with edgekd[ncnn]) fp32; edgekd's int8 (the same PT2E QAT graph, as ncnn2int8 lays
               it out); ncnn's own PTQ tools (ncnn2table, ncnn2int8) ship in no wheel: no PTQ row
  onnxruntime, PT2E: (with edgekd[bench]) edgekd's PT2E QAT graph as ONNX (torch.onnx's dynamo
               exporter): should the ARM ONNX artifact come from the XNNPACK-scheme QAT?
Every figure is the median p50 over `--rounds` rounds, each round measuring every artifact
once in a fresh process (`python -m edgekd.runtime`), so drift hits all of them alike.
Prints per model and runtime: edgekd int8 / best PTQ (< 1: edgekd faster) and int8 / fp32, each
the median of the per-round ratios with their range, and how the runtime's graph of edgekd's int8
differs from the PTQ's (a timing within the machine's drift, on the same kernels, is parity).

ARM-kernel agreement (with `--cifar`: the CIFAR-10 ImageFolder extracted from ../shared). Random
weights give every image the same class, so agreement needs a trained model: the shared
ResNet-18 CIFAR-10 teacher at 32x32, the same artifacts made from it (calibrated on training
images; edgekd's int8 is its QAT graphs calibrated, not trained: the benchmark trains nothing),
each artifact's accuracy and top-1 agreement with the fp32 PyTorch model on `--images` test
images, on this host's kernels and on the aarch64 build of its runtime under qemu
(`edgekd.emulation`; ExecuTorch has no aarch64 build there).

    python benchmarks/int8_vs_ptq.py [--models mobilenet_v2 resnet18] [--target x86]
    tar xzf ../shared/data/cifar10-jpg.tar.gz -C /tmp/cifar10
    python benchmarks/int8_vs_ptq.py --models --cifar /tmp/cifar10   # agreement only
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from edgekd.formats import Artifact, Int8Inputs
from edgekd.formats.executorch import torch2executorch
from edgekd.formats.ncnn import torch2ncnn
from edgekd.formats.onnx import torch2onnx
from edgekd.formats.openvino import torch2openvino
from edgekd.formats.qdq import onnxruntime_ptq
from edgekd.formats.tflite import torch2tflite
from edgekd.models import create_model
from edgekd.quantizers.nncf import insert_fake_quant, qdq_export_mode
from edgekd.runtime import runtime_version
from edgekd.runtime.base import native_output_silenced
from edgekd.stages.bench import BenchConfig, measure_in_subprocess
from edgekd.stages.export import ExportConfig
from edgekd.targets import load_target

SHARED = Path(__file__).resolve().parents[2] / "shared"
MODELS = ["mobilenet_v2", "mobilenet_v3_small", "shufflenet_v2_x1_0", "resnet18"]
ORT_PTQ = {"ptq-s8s8": ("s8", False), "ptq-u8s8": ("u8", False), "ptq-u8s8-rr": ("u8", True)}


def trained_like(name: str, size: int) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model(name, 1000, small_input=False).train()
    with torch.no_grad():  # BatchNorm statistics from data, so activation ranges look trained
        for _ in range(3):
            model(torch.randn(8, 3, size, size))
    return model.eval()


def ort_ptq(fp32: Path, dest: Path, calibration: list[np.ndarray], activations: str, reduce_range: bool) -> Path:
    import onnx

    onnx.save(onnxruntime_ptq(onnx.load(fp32), calibration, activations, True, reduce_range), dest)
    return dest


def nncf_ptq_openvino(fp32_xml: Path, dest: Path, calibration: list[np.ndarray]) -> Path:
    import nncf
    import openvino as ov

    quantized = nncf.quantize(ov.Core().read_model(fp32_xml), nncf.Dataset(calibration), subset_size=len(calibration))
    dest.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(dest / "model.xml"), compress_to_fp16=False)
    return dest / "model.xml"


def artifacts_for(model, size: int, target: str, folder: Path, calibration: list[np.ndarray]) -> dict:
    """{row name: (runtime, path)} for one model; `calibration` holds batches of one image."""
    meta = {"input_size": json.dumps([size, size]), "precision": "fp32"}
    opset = ExportConfig().opset
    fp32 = torch2onnx(model, folder / "fp32.onnx", meta, opset)
    flavour = load_target(target).int8
    quantized = qdq_export_mode(insert_fake_quant(model, flavour, [torch.from_numpy(c) for c in calibration]))
    int8_meta = meta | {"precision": "int8", "int8": json.dumps(flavour.model_dump())}
    images = np.concatenate(calibration)
    rows = {"fp32": ("onnxruntime", fp32)}
    for row, (activations, reduce_range) in ORT_PTQ.items():
        rows[row] = ("onnxruntime", ort_ptq(fp32, folder / f"{row}.onnx", calibration, activations, reduce_range))
    rows["edgekd-int8"] = (
        "onnxruntime",
        torch2onnx(quantized, folder / "edgekd_int8.onnx", int8_meta, opset, Int8Inputs(images, flavour)),
    )
    fp32_ir = torch2openvino(model, folder / "fp32_openvino", meta, opset)
    rows["ov-fp32"] = ("openvino", fp32_ir)
    rows["ov-nncf-ptq"] = ("openvino", nncf_ptq_openvino(fp32_ir, folder / "nncf_ptq_openvino", calibration))
    rows["ov-edgekd-int8"] = ("openvino", torch2openvino(quantized, folder / "edgekd_int8_openvino", int8_meta, opset))
    rows |= pt2e_rows(model, folder, meta, [torch.from_numpy(c) for c in calibration], flavour)
    return rows


def pt2e2onnx(graph, dest: Path, size: int) -> Path:
    """A PT2E graph as ONNX QDQ, through torch.onnx's dynamo exporter (the TorchScript one has no
    quantized_decomposed ops)."""
    with native_output_silenced(1):  # the exporter prints its steps
        batch = ({0: torch.export.Dim("batch", min=1, max=4096)},)
        example = (torch.zeros(2, 3, size, size),)
        torch.onnx.export(graph, example, dynamic_shapes=batch, dynamo=True, opset_version=18).save(str(dest))
    return dest


def pt2e_ptq(model, calibration: list[torch.Tensor], quantizer):
    """Post-training quantization in PT2E: observe the calibration images, convert (weights left
    float behind their quantize/dequantize pairs, as both exporters take them)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from edgekd.quantizers.xnnpack import capture, train_eval_switchable

    observed = prepare_pt2e(capture(model.eval(), torch.cat(calibration)[:2]), quantizer)
    for image in calibration:
        observed(image)
    return train_eval_switchable(convert_pt2e(observed, fold_quantize=False))


def edgekd_pt2e_int8(model, calibration: list[torch.Tensor], flavour):
    """edgekd's PT2E QAT graph as its checkpoint holds it, converted untrained."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    from edgekd.quantizers.xnnpack import XnnpackBackend, train_eval_switchable

    qat = XnnpackBackend().prepare(model, flavour, calibration)
    qat.eval()
    return train_eval_switchable(convert_pt2e(qat, fold_quantize=False))


def own_ptq() -> list[tuple[str, str, str, object, Callable, str]]:
    """(row prefix, runtime, PTQ row, the format's own PT2E quantizer, converter, suffix) for the
    PT2E formats whose runtime is installed."""
    sides = []
    if runtime_version("executorch"):
        from executorch.backends.xnnpack.quantizer import xnnpack_quantizer as xnnpack

        quantizer = xnnpack.XNNPACKQuantizer().set_global(xnnpack.get_symmetric_quantization_config(True))
        sides.append(("et", "executorch", "xnnpack-ptq", quantizer, torch2executorch, ".pte"))
    if runtime_version("litert"):
        from litert_torch.quantize import pt2e_quantizer as litert

        quantizer = litert.PT2EQuantizer().set_global(litert.get_symmetric_quantization_config(True))
        sides.append(("lt", "litert", "litert-ptq", quantizer, torch2tflite, ".tflite"))
    return sides


def pt2e_rows(model, folder: Path, meta: dict, calibration: list[torch.Tensor], flavour) -> dict:
    """Per PT2E format: fp32, its own quantizer's PTQ, and edgekd's int8 (one QAT graph for all)."""
    opset, int8_meta, rows = ExportConfig().opset, meta | {"precision": "int8"}, {}
    sides, ncnn = own_ptq(), runtime_version("ncnn")
    ours = edgekd_pt2e_int8(model, calibration, flavour) if sides or ncnn else None
    if ours is not None and importlib.util.find_spec("onnxscript"):
        size = json.loads(meta["input_size"])[0]
        rows["edgekd-int8-pt2e"] = ("onnxruntime", pt2e2onnx(ours, folder / "edgekd_int8_pt2e.onnx", size))
    if ncnn:
        rows["nc-fp32"] = ("ncnn", torch2ncnn(model, folder / "nc_fp32_ncnn", meta, opset))
        rows["nc-edgekd-int8"] = ("ncnn", torch2ncnn(ours, folder / "nc_int8_ncnn", int8_meta, opset))
    for prefix, runtime, ptq_row, quantizer, convert, suffix in sides:
        ptq = pt2e_ptq(model, calibration, quantizer)
        rows[f"{prefix}-fp32"] = (runtime, convert(model, folder / f"{prefix}_fp32{suffix}", meta, opset))
        rows[f"{prefix}-{ptq_row}"] = (runtime, convert(ptq, folder / f"{prefix}_ptq{suffix}", int8_meta, opset))
        rows[f"{prefix}-edgekd-int8"] = (runtime, convert(ours, folder / f"{prefix}_int8{suffix}", int8_meta, opset))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="*", default=MODELS)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--target", default="x86", help="the target profile whose int8 flavour edgekd uses")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calibration", type=int, default=32)
    parser.add_argument("--cifar", type=Path, help="CIFAR-10 ImageFolder: also measure the ARM-kernel agreement")
    parser.add_argument("--teacher", type=Path, default=SHARED / "teachers/resnet18_cifar10/resnet18_cifar10.pt")
    parser.add_argument("--images", type=int, default=500, help="test images for the agreement")
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    args = parser.parse_args()
    bench = BenchConfig(warmup=args.warmup, runs=args.runs, timeout_s=900)
    results = {}
    with tempfile.TemporaryDirectory(prefix="edgekd-int8-bench-") as tmp:
        for name in args.models:
            folder = Path(tmp) / name
            folder.mkdir()
            calibration = list(
                np.random.default_rng(0).standard_normal(
                    (args.calibration, 1, 3, args.size, args.size), dtype=np.float32
                )
            )
            rows = artifacts_for(trained_like(name, args.size), args.size, args.target, folder, calibration)
            p50s: dict[str, list[float]] = {row: [] for row in rows}
            executed: dict[str, dict] = {}
            for _ in range(args.rounds):
                for row, (runtime, path) in rows.items():
                    artifact = Artifact(
                        name=row, format="", precision="", runtime=runtime, path=str(path), size_mb=0.0, sha256=""
                    )
                    got = measure_in_subprocess(artifact, args.threads, bench)
                    if got["status"] != "ok":
                        sys.exit(f"{name} {row}: {got['reason']}")
                    p50s[row].append(got["p50_ms"])
                    executed[row] = got["executed"]
            results[name] = {
                row: {"p50_ms": statistics.median(v), "all": v, "executed": executed[row]} for row, v in p50s.items()
            }
            print_model(name, results[name], args)
        if results:
            print_summary(results)
        if args.cifar:
            results["agreement"] = arm_agreement(args, Path(tmp) / "cifar")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args), "results": results}, indent=1, default=str))


def arm_agreement(args, folder: Path) -> dict:
    """Accuracy and top-1 agreement with the fp32 PyTorch model of every artifact made from the
    trained CIFAR-10 teacher, on this host's kernels and on ARM's under qemu."""
    from edgekd import emulation
    from edgekd.data.loading import DataConfig, load_data
    from edgekd.runtime import open_session
    from edgekd.stages.verify import validation_arrays
    from edgekd.training.teachers import TeacherConfig, load_teacher

    cifar = {"input_size": 32, "mean": (0.4914, 0.4822, 0.4465), "std": (0.2470, 0.2435, 0.2616)}
    data = load_data(DataConfig(path=args.cifar, max_val_samples=args.images, batch_size=args.calibration, **cifar))
    teacher = load_teacher(TeacherConfig(path=args.teacher, arch="resnet18", small_input=True), 10, 32, data.classes)
    images, labels = validation_arrays(data)
    calibration = list(next(iter(data.loader("train")))[0].numpy()[:, None])
    folder.mkdir()
    rows = artifacts_for(teacher.eval(), 32, args.target, folder, calibration)
    with torch.no_grad():
        expected = teacher(torch.from_numpy(images)).argmax(1).numpy()
    found = {}
    for row, (runtime, path) in rows.items():
        top1 = open_session(runtime, str(path), args.threads).run(images).argmax(1)
        found[row] = {"host": (float(np.mean(top1 == labels)), float(np.mean(top1 == expected)))}
    why_not = emulation.unavailable("auto")
    if why_not is None:
        arm = {row: (runtime, str(path)) for row, (runtime, path) in rows.items() if runtime in emulation.releases()}
        for row, logits in zip(arm, emulation.arm_logits(list(arm.values()), images, threads=args.threads)):
            found[row]["arm"] = (
                float(np.mean(logits.argmax(1) == labels)),
                float(np.mean(logits.argmax(1) == expected)),
            )
    print(
        f"\nARM-kernel agreement: {args.teacher.name} (fp32 PyTorch {np.mean(expected == labels):.2%}), "
        f"{len(labels)} CIFAR-10 test images, 32x32; accuracy / top-1 agreement with the fp32 PyTorch model"
    )
    print(f"ARM: each runtime's aarch64 build under qemu -cpu {emulation.CPU}" + (f" ({why_not})" if why_not else ""))
    print("| artifact | runtime | host accuracy | host agreement | ARM accuracy | ARM agreement |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row, (runtime, _) in rows.items():
        cells = [found[row].get(where) for where in ("host", "arm")]
        text = " | ".join(f"{c[0]:.2%} | {c[1]:.2%}" if c else "- | -" for c in cells)
        print(f"| {row} | {runtime} | {text} |")
    return found


def print_model(name: str, rows: dict, args) -> None:
    print(f"\n{name} {args.size}x{args.size}, {args.threads} threads, batch 1 (median p50 of {args.rounds} rounds)")
    for row, r in rows.items():
        e = r["executed"]  # ExecuTorch does not say which kernels its XNNPACK delegate ran
        kernels = f"{e['precision']} ({e['int8_convs']}/{e['convs']} int8 convs)" if e else "(not reported)"
        print(f"  {row:16s} {r['p50_ms']:8.3f} ms   {kernels}")


def paired_ratios(rows: dict, ours: str, other: str) -> str:
    """Median of the per-round ratios, with their range: both were measured in the same round,
    so the range shows how far the machine's drift moves a ratio."""
    ratios = sorted(a / b for a, b in zip(rows[ours]["all"], rows[other]["all"]))
    return f"{statistics.median(ratios):.2f} ({ratios[0]:.2f}-{ratios[-1]:.2f})"


def print_summary(results: dict) -> None:
    print("\nedgekd / X: median of the per-round ratios (their range); < 1: edgekd's int8 is faster")
    print("kernels: the runtime's graph of edgekd's int8 against the PTQ's (onnxruntime's optimized nodes;")
    print("OpenVINO's runtime layers with their precision), where they differ: edgekd's count vs the PTQ's")
    print("| model | runtime | fp32 ms | best PTQ | PTQ ms | edgekd int8 ms | edgekd / PTQ | edgekd / fp32 | kernels |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, rows in results.items():
        ms = {row: r["p50_ms"] for row, r in rows.items()}
        best = min(ORT_PTQ, key=ms.__getitem__)
        sides = [("onnxruntime", "fp32", best, "edgekd-int8"), ("openvino", "ov-fp32", "ov-nncf-ptq", "ov-edgekd-int8")]
        sides += [("executorch", "et-fp32", "et-xnnpack-ptq", "et-edgekd-int8")] if "et-fp32" in rows else []
        sides += [("litert", "lt-fp32", "lt-litert-ptq", "lt-edgekd-int8")] if "lt-fp32" in rows else []
        sides += [("onnxruntime, PT2E", "fp32", best, "edgekd-int8-pt2e")] if "edgekd-int8-pt2e" in rows else []
        for runtime, fp32, ptq, ours in sides:
            print(
                f"| {name} | {runtime} | {ms[fp32]:.3f} | {ptq} | {ms[ptq]:.3f} | {ms[ours]:.3f} "
                f"| {paired_ratios(rows, ours, ptq)} | {paired_ratios(rows, ours, fp32)} "
                f"| {same_kernels(rows, ours, ptq)} |"
            )
        if "nc-fp32" in rows:  # no PTQ row: ncnn's quantizer is a tool no wheel ships
            ours = "nc-edgekd-int8"
            print(
                f"| {name} | ncnn | {ms['nc-fp32']:.3f} | - | - | {ms[ours]:.3f} | - "
                f"| {paired_ratios(rows, ours, 'nc-fp32')} | no PTQ in any wheel |"
            )


def same_kernels(rows: dict, ours: str, other: str) -> str:
    a, b = (rows[row]["executed"].get("optimized_ops") for row in (ours, other))
    if a is None or b is None:
        return "not reported"
    if a == b:
        return "same"
    diff = {op: (a.get(op, 0), b.get(op, 0)) for op in sorted(a.keys() | b.keys()) if a.get(op, 0) != b.get(op, 0)}
    return ", ".join(f"{op} {x} vs {y}" for op, (x, y) in diff.items())


if __name__ == "__main__":
    main()
