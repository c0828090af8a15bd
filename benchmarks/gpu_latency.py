"""GPU latency of edgekd's GPU runtimes against PyTorch fp16 with CUDA graphs, side by side.

Run on a machine with an NVIDIA GPU:  python benchmarks/gpu_latency.py [--arch mobilenet_v2]
Prints, per runtime variant, p50 ms at batch 1 and at the throughput batch, measured each in a
fresh process by `python -m edgekd.runtime`, and the ratio of the fastest batch-1 row to
`torch-cuda fp16 CUDA graph` (the bar: at most 1.0). Random weights at 224x224: latency does
not depend on the weights.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from edgekd.models import create_model
from edgekd.stages.bench import BenchConfig, bench
from edgekd.stages.export import ExportConfig, export
from edgekd.targets import load_target
from edgekd.targets.kinds import place

PREPROCESSING = {
    "classes": [str(i) for i in range(1000)],
    "input_size": [224, 224],
    "layout": "NCHW",
    "channel_order": "RGB",
    "resize": "bilinear",
    "scale": 1 / 255,
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", default="mobilenet_v2")
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    model = create_model(args.arch, 1000, small_input=False).eval()
    with tempfile.TemporaryDirectory() as out:
        artifacts = export(ExportConfig(formats=["onnx", "torch"]), {"fp32": model}, PREPROCESSING, Path(out))
        rows = bench(BenchConfig(warmup=20, runs=args.runs), artifacts, place(load_target("cuda")))
    for row in rows:
        name = f"{row.artifact} {row.variant or row.runtime}"
        figure = f"p50 {row.p50_ms:.3f} ms at batch {row.batch}" if row.status == "ok" else row.reason
        print(f"{name:50} {figure}")
    batch1 = [r for r in rows if r.status == "ok" and r.batch == 1]
    bar = [r for r in batch1 if r.variant == "torch-cuda fp16 CUDA graph"]
    if batch1 and bar:
        best = min(batch1, key=lambda r: r.p50_ms)
        ratio = best.p50_ms / bar[0].p50_ms
        print(f"fastest at batch 1: {best.artifact} {best.variant}: {ratio:.2f}x fp16 CUDA graph")


if __name__ == "__main__":
    main()
