"""Run every artifact in its own runtime on the validation split and compare it with the
PyTorch model it came from: accuracy, and top-1 agreement (fraction of images on which
both predict the same class). An artifact below the stated agreement fails the build.

When the target is another kind of machine than this host, this host's int8 kernels are
not the target's (AVX2 without VNNI saturates where ARM's dot products do not), so an int8
ONNX is judged by its QDQ reference semantics (onnxruntime without graph optimization, which
evaluates Q/DQ in float); the host's own result is reported beside it.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from edgekd.data import Data
from edgekd.runtime import open_session
from edgekd.stages.export import Artifact
from edgekd.targets import Target


class VerifyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_agreement_fp32: float = Field(0.99, ge=0, le=1)
    min_agreement_int8: float = Field(0.97, ge=0, le=1)
    threads: int = Field(2, ge=1)
    arm_emulation: bool = Field(
        False, description="for aarch64 targets, check ONNX artifacts on ARM kernels under qemu (edgekd.emulation)"
    )


@dataclass
class Verification:
    artifact: str
    checked_by: str  # "runtime" or "qdq-reference"
    accuracy: float  # of what `checked_by` ran: the accuracy expected on the target
    agreement: float
    min_agreement: float
    passed: bool
    reference_accuracy: float  # of the PyTorch model
    host_accuracy: float  # the artifact in its runtime on this host
    host_agreement: float
    max_abs_logit_diff: float

    def to_dict(self) -> dict:
        return asdict(self)


def validation_arrays(data: Data) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for x, y in data.loader("val"):
        images.append(x.numpy())
        labels.append(y.numpy())
    return np.concatenate(images), np.concatenate(labels)


def _run(session, images: np.ndarray) -> np.ndarray:
    return np.concatenate([session.run(images[i : i + 256]) for i in range(0, len(images), 256)])


def verify(
    cfg: VerifyConfig, artifacts: list[Artifact], references: dict[str, torch.Tensor], data: Data, target: Target
) -> list[Verification]:
    """`references` holds the PyTorch logits on the validation split per precision."""
    images, labels = validation_arrays(data)
    results = []
    for artifact in artifacts:
        reference = references[artifact.precision].numpy()
        host = _run(open_session(artifact.runtime, artifact.path, cfg.threads), images)
        checked_by, logits = "runtime", host
        # the ONNX file's QDQ semantics, in float, stand in for another CPU's int8 kernels; the
        # OpenVINO IR is a different graph (NNCF's layout), so it is checked as this host runs it
        if artifact.precision == "int8" and not target.runs_on_host() and artifact.format == "onnx":
            checked_by = f"qdq-reference (this {platform.machine()} host's int8 kernels are not {target.arch}'s)"
            logits = _run(open_session("onnxruntime", artifact.path, cfg.threads, reference=True), images)
        if cfg.arm_emulation and target.arch == "aarch64" and not target.runs_on_host() and artifact.format == "onnx":
            from edgekd.emulation import arm_logits

            checked_by = "onnxruntime's aarch64 kernels under qemu emulation (numerics only, never latency)"
            logits = arm_logits(artifact.path, images)
        minimum = cfg.min_agreement_fp32 if artifact.precision == "fp32" else cfg.min_agreement_int8
        agreement = float((logits.argmax(1) == reference.argmax(1)).mean())
        results.append(
            Verification(
                artifact=artifact.name,
                checked_by=checked_by,
                accuracy=float((logits.argmax(1) == labels).mean()),
                agreement=agreement,
                min_agreement=minimum,
                passed=agreement >= minimum,
                reference_accuracy=float((reference.argmax(1) == labels).mean()),
                host_accuracy=float((host.argmax(1) == labels).mean()),
                host_agreement=float((host.argmax(1) == reference.argmax(1)).mean()),
                max_abs_logit_diff=float(np.abs(logits - reference).max()),
            )
        )
    return results
