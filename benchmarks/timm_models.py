"""Which timm models survive edgekd's whole pipeline, stage by stage, with edgekd's own code:

  create    `create_model("timm:NAME")`, the student as the distill stage builds it
  distill   a KD training step (forward, backward) against a teacher's logits
  quantize  BatchNorm folded, NNCF's fake quantizers inserted, a QAT step
  export    ONNX and OpenVINO IR, fp32 and int8 (edgekd's layouts)
  verify    each artifact in its runtime against the PyTorch model on the same images: fp32
            logits within 1e-3 (relative L2), int8 within 25% of the fake-quantized model's

Each model runs at its pretrained input size, random weights with BatchNorm statistics set from
data (no weights can be downloaded here; the graph, not the weights, decides what survives).
The first stage that fails is recorded with its error. `--write` saves the results to
edgekd/timm_support.json (read when a config names `timm:NAME`: a model that fails stops the
run there) and the table between the README's timm-table markers.

    python benchmarks/timm_models.py [--models mobilenetv3_small_100 ...] [--size 224] [--write]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from edgekd.losses import create_loss
from edgekd.models import create_model
from edgekd.models.timm_models import SUPPORT_TABLE, support_markdown
from edgekd.quantizers.nncf import fold_batchnorm, insert_fake_quant, qdq_export_mode
from edgekd.runtime import open_session
from edgekd.stages.export import ExportConfig, Int8Inputs, export
from edgekd.targets import load_target

# the mobile leaders timm has, and the small models users start from
MODELS = [
    "mobilenetv3_small_100",
    "mobilenetv3_large_100",
    "mobilenetv4_conv_small",
    "mobilenetv4_hybrid_medium",
    "efficientnet_lite0",
    "efficientnet_b0",
    "tf_mobilenetv3_small_100",
    "ghostnet_100",
    "ghostnetv2_100",
    "fastvit_t8",
    "repvit_m0_9",
    "mobileone_s0",
    "lcnet_050",
    "tinynet_e",
    "mnasnet_100",
    "mobilevitv2_050",
    "efficientvit_b0",
    "edgenext_xx_small",
    "regnetx_002",
]
# int8: a random-weight model's quantization noise is far below it, a broken graph (a lost activation) far above
FP32_TOLERANCE, INT8_TOLERANCE = 1e-3, 0.25
README = Path(__file__).resolve().parents[1] / "README.md"
MARKERS = ("<!-- timm-table: written by benchmarks/timm_models.py --write -->", "<!-- /timm-table -->")


class StageFailed(Exception):
    def __init__(self, stage: str, error: str):
        super().__init__(f"{stage}: {error}")
        self.stage, self.error = stage, error


def stage(name: str, fn, *args):
    try:
        return fn(*args)
    except StageFailed:
        raise
    except Exception as e:  # any failure of the library under test is the finding
        lines = [line for line in str(e).splitlines() if line.strip()]
        raise StageFailed(name, f"{type(e).__name__}: {lines[0][:160] if lines else ''}") from e


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-12))


def survive(name: str, size: int, classes: int = 10) -> dict:
    torch.manual_seed(0)
    images = [torch.randn(8, 3, size, size) for _ in range(3)]

    def create():
        model = create_model(f"timm:{name}", classes).train()
        with torch.no_grad():  # BatchNorm statistics from data, so activation ranges look trained
            for batch in images:
                model(batch)
        return model

    def step(model, loss):
        teacher_logits = torch.randn(8, classes)
        loss(model(images[0]), teacher_logits, torch.arange(8) % classes).backward()

    def quantize(model):
        fake = insert_fake_quant(fold_batchnorm(model), load_target("x86").int8, images)
        step(fake.train(), create_loss("kd"))
        return qdq_export_mode(fake).eval()

    def verify(artifacts, models):
        x = images[1].numpy()
        errors = {}
        for artifact in artifacts:
            precision = artifact.precision
            with torch.no_grad():
                want = models[artifact.student_key](images[1]).numpy()
            got = open_session(artifact.runtime, str(artifact.path), threads=2).run(x)
            errors[artifact.name] = relative_error(got, want)
            limit = FP32_TOLERANCE if precision == "fp32" else INT8_TOLERANCE
            if errors[artifact.name] > limit:
                raise ValueError(f"{artifact.name} logits differ by {errors[artifact.name]:.3g} (limit {limit})")
        return errors

    model = stage("create", create)
    params = sum(p.numel() for p in model.parameters())
    stage("distill", step, model, create_loss("kd"))
    fp32 = model.eval()
    int8 = stage("quantize", quantize, create().eval())
    with tempfile.TemporaryDirectory() as tmp:
        flavour = load_target("x86").int8
        calibration = Int8Inputs(torch.cat(images).numpy(), flavour)
        preprocessing = {"classes": [str(i) for i in range(classes)], "input_size": [size, size]}
        models = {"fp32": fp32, "nncf": int8}
        artifacts = stage("export", export, ExportConfig(), models, preprocessing, Path(tmp), calibration)
        errors = stage("verify", verify, artifacts, models)
    return {"params_m": round(params / 1e6, 2), "relative_error": {k: float(f"{v:.3g}") for k, v in errors.items()}}


def write_readme(table: str) -> None:
    text = README.read_text()
    start, end = text.index(MARKERS[0]) + len(MARKERS[0]), text.index(MARKERS[1])
    README.write_text(text[:start] + "\n" + table + text[end:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--size", type=int, default=None, help="input size (default: each model's pretrained one)")
    parser.add_argument("--write", action="store_true", help="save edgekd/timm_support.json and the README table")
    args = parser.parse_args()
    import timm

    from edgekd.models import model_card

    results = {}
    for name in args.models:
        started = time.perf_counter()
        size = args.size or model_card(f"timm:{name}").preprocessing().input_size
        try:
            result = {"failed_stage": None, "error": None} | survive(name, size)
        except StageFailed as e:
            result = {"failed_stage": e.stage, "error": e.error}
            if e.__cause__ is not None:
                traceback.print_exception(e.__cause__, limit=-3, file=sys.stderr)
        result |= {"input_size": size, "seconds": round(time.perf_counter() - started, 1)}
        results[name] = result
        print(
            f"{name}: {result['failed_stage'] or 'works'} ({result['seconds']} s) {result['error'] or ''}", flush=True
        )
    facts = {"timm": timm.__version__, "torch": torch.__version__, "machine": platform.machine(), "models": results}
    table = support_markdown(facts)
    print(table)
    if args.write:
        SUPPORT_TABLE.write_text(json.dumps(facts, indent=1) + "\n")
        write_readme(table)


if __name__ == "__main__":
    main()
