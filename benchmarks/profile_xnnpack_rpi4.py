"""Profiles the ARM instructions of the models in XNNPACK's published Raspberry Pi 4 benchmark, as
LiteRT .tflite files run by the aarch64 ai-edge-litert (XNNPACK delegate, 4 threads) on an emulated
Cortex-A72, and stores them with XNNPACK's published latencies in
benchmarks/calibration/xnnpack_rpi4.json.

    python benchmarks/profile_xnnpack_rpi4.py [--models mobilenet_v1_fp32 ...]

Models: MobileNet v1 1.0x (defined here), torchvision's MobileNet v2 and v3 large/small, random
weights, 224x224, NCHW input as edgekd exports it; fp32 through litert-torch, and for v1 and v2 also
fully int8 (PT2E post-training quantization with litert-torch's quantizer, per-channel weights, static
activations, 8 random images). Resumable: models already stored are kept. About a minute per model.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
import torchvision
from torch import nn

from edgekd.emulation import releases
from edgekd.emulation.profile import WORK, run_profiles
from edgekd.formats.tflite import torch2tflite
from edgekd.stages.export import ExportConfig

STORE = Path(__file__).parent / "calibration" / "xnnpack_rpi4.json"
CPU, THREADS, SIZE = "cortex-a72", 4, 224
SOURCE = (
    "google/XNNPACK README.md (commit 75db3c09, Aug 2026), Raspberry Pi section, end2end-bench, multi-threaded, "
    "RPi 4 (BCM2711, ARM64) column, Raspbian Buster, Feb 2022"
)
PUBLISHED_MS = {
    "mobilenet_v1_fp32": 77, "mobilenet_v2_fp32": 46, "mobilenet_v3_large_fp32": 40, "mobilenet_v3_small_fp32": 15,
    "mobilenet_v1_int8": 24, "mobilenet_v2_int8": 17,
}  # fmt: skip


def conv_bn(cin: int, cout: int, kernel: int, stride: int, groups: int = 1) -> list[nn.Module]:
    conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
    return [conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class MobileNetV1(nn.Module):
    """MobileNet v1 1.0x: a 3x3 stride-2 convolution to 32 channels, 13 depthwise-separable blocks,
    average pooling and a 1000-way classifier (4.2M parameters, 569M multiply-adds at 224x224)."""

    BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), *[(512, 1)] * 5, (1024, 2), (1024, 1)]

    def __init__(self, classes: int = 1000):
        super().__init__()
        layers, cin = conv_bn(3, 32, 3, 2), 32
        for cout, stride in self.BLOCKS:
            layers += conv_bn(cin, cin, 3, stride, groups=cin) + conv_bn(cin, cout, 1, 1)
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def build(arch: str) -> nn.Module:
    torch.manual_seed(0)
    model = MobileNetV1() if arch == "mobilenet_v1" else getattr(torchvision.models, arch)(weights=None)
    return model.eval()


def int8_ptq(model: nn.Module) -> nn.Module:
    """PT2E post-training quantization with litert-torch's quantizer, as int8_vs_ptq.py's lt-litert-ptq."""
    from int8_vs_ptq import pt2e_ptq  # benchmarks/ is on sys.path when this script runs
    from litert_torch.quantize import pt2e_quantizer as litert

    quantizer = litert.PT2EQuantizer().set_global(litert.get_symmetric_quantization_config(True))
    calibration = [torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(i)) for i in range(8)]
    return pt2e_ptq(model, calibration, quantizer)


def tflite(name: str, folder: Path) -> Path:
    arch, precision = name.rsplit("_", 1)
    model = build(arch)
    if precision == "int8":
        model = int8_ptq(model)
    meta = {"input_size": json.dumps([SIZE, SIZE]), "precision": precision}
    return torch2tflite(model, folder / f"{name}.tflite", meta, ExportConfig().opset)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(PUBLISHED_MS), choices=list(PUBLISHED_MS))
    args = parser.parse_args()
    store = json.loads(STORE.read_text()) if STORE.is_file() else {"profiles": {}}
    store |= {"source": SOURCE, "cpu": CPU, "threads": THREADS, "runtime": f"litert {releases()['litert']}"}
    store["ms"] = PUBLISHED_MS
    with tempfile.TemporaryDirectory(prefix="edgekd-xnnpack-rpi4-") as scratch:
        for name in [m for m in args.models if m not in store["profiles"]]:
            path = tflite(name, Path(scratch))
            job = {"runtime": "litert", "path": str(path), "threads": THREADS, "repeats": 1}
            profile = run_profiles([job], CPU)[0]
            if isinstance(profile, str):
                raise SystemExit(f"LiteRT could not run {name} on {CPU}: {profile}")
            store["profiles"][name] = profile.to_json()
            STORE.parent.mkdir(parents=True, exist_ok=True)
            STORE.write_text(json.dumps(store, indent=1, sort_keys=True))
            classes = {c: profile.total(c) / 1e6 for c in WORK}
            per_class = " ".join(f"{c}={v:.1f}" for c, v in classes.items())
            print(f"{name}: {sum(classes.values()):.1f} M instructions ({per_class})", flush=True)


if __name__ == "__main__":
    main()
