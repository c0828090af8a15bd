"""Run every artifact on the validation split and compare it with the PyTorch model it came
from: accuracy, and top-1 agreement (the fraction of images on which both predict the same
class). An artifact below the stated agreement on its target fails the build.

Every artifact is run by this host's runtime: those are the host table's figures. For a target
that is another kind of machine, this host's int8 kernels are not the target's (AVX2 without
VNNI saturates where ARM's dot products do not), so the target's figures come, in this order,
from the target's own kernels under emulation (aarch64 onnxruntime and OpenVINO under qemu,
`edgekd.emulation`), from the artifact's reference semantics (IEEE float for an fp32 artifact;
an int8 ONNX file's Q/DQ evaluated in float), or are "not verified", which is shown and never
fails. A disagreement seen only on this host's kernels is then a note, not a failure.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from edgekd import emulation
from edgekd.data.loading import Data
from edgekd.errors import EdgekdError
from edgekd.formats import Artifact
from edgekd.reporting.environment import cpu_name
from edgekd.reporting.schema import Verification
from edgekd.runtime import open_session
from edgekd.targets.kinds import Placement


class VerifyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_agreement_fp32: float = Field(0.99, ge=0, le=1)
    min_agreement_int8: float = Field(0.97, ge=0, le=1)
    threads: int = Field(2, ge=1)
    emulation_images: int = Field(
        128, ge=0, description="validation images run under emulation (0 = all): qemu runs OpenVINO's kernels slowly"
    )
    arm_emulation: bool | Literal["auto"] = Field(
        "auto",
        description="aarch64 targets: run the artifacts on ARM's kernels under qemu; auto = when qemu is installed",
    )


def validation_arrays(data: Data) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for x, y in data.loader("val"):
        images.append(x.numpy())
        labels.append(y.numpy())
    return np.concatenate(images), np.concatenate(labels)


def _run(session, images: np.ndarray) -> np.ndarray:
    return np.concatenate([session.run(images[i : i + 256]) for i in range(0, len(images), 256)])


def check_emulation(cfg: VerifyConfig, placement: Placement) -> None:
    """Before any training: `arm_emulation = true` for an ARM target this host cannot run
    stops the run at once when qemu is missing, not after the model is trained."""
    if placement.emulated:
        emulation.unavailable(cfg.arm_emulation)


def _emulated(cfg: VerifyConfig, artifacts: list[Artifact], images: np.ndarray):
    """Logits per artifact name from ARM's kernels under emulation, and why not for the rest."""
    reason = emulation.unavailable(cfg.arm_emulation)
    runnable = [a for a in artifacts if a.runtime in emulation.releases()]
    if reason or not runnable:
        return {}, reason
    try:
        subset = images[: cfg.emulation_images or len(images)]
        logits = emulation.arm_logits([(a.runtime, a.path) for a in runnable], subset, threads=cfg.threads)
    except EdgekdError as e:
        if cfg.arm_emulation is True:
            raise
        return {}, str(e)
    return dict(zip((a.name for a in runnable), logits)), None


def _target_runs(cfg: VerifyConfig, artifacts: list[Artifact], images: np.ndarray, placement: Placement):
    """Each kind of target's own logits, by artifact name, and why not for the rest: this host's
    are the host run's; an ARM target's come from emulation; other kinds have none."""
    if placement.on_host:
        return {}, None
    if placement.emulated:
        return _emulated(cfg, artifacts, images)
    return {}, f"edgekd has no emulator for {placement.target.arch}"


def _target_logits(cfg, artifact: Artifact, images, host: np.ndarray, emulated: dict, why_not, placement: Placement):
    """(method, checked_by, logits or None) for the target's figures of one artifact."""
    if placement.on_host:
        return "runtime", "runtime", host
    if artifact.name in emulated:
        return "emulated", emulation.description(artifact.runtime), emulated[artifact.name]
    why_not = why_not or f"{artifact.runtime} does not run under emulation"
    if artifact.precision == "fp32":  # IEEE float: this host's float kernels compute the same function
        return "reference", f"reference semantics: fp32 on this host's float kernels ({why_not})", host
    if artifact.format == "onnx":
        logits = _run(open_session("onnxruntime", artifact.path, cfg.threads, reference=True), images)
        return "reference", f"reference semantics: Q/DQ evaluated in float by onnxruntime ({why_not})", logits
    return "not verified", f"not verified on {placement.target.arch}: {why_not}", None


def verify(
    cfg: VerifyConfig,
    artifacts: list[Artifact],
    references: dict[str, torch.Tensor],
    data: Data,
    placement: Placement,
) -> list[Verification]:
    """`references` holds the PyTorch logits on the validation split of each trained model, by
    `edgekd.formats.student_key`."""
    images, labels = validation_arrays(data)
    emulated, why_not = _target_runs(cfg, artifacts, images, placement)
    results = []
    for artifact in artifacts:
        reference = references[artifact.student_key].numpy()
        host = _run(open_session(artifact.runtime, artifact.path, cfg.threads), images)
        method, checked_by, logits = _target_logits(cfg, artifact, images, host, emulated, why_not, placement)
        minimum = cfg.min_agreement_fp32 if artifact.precision == "fp32" else cfg.min_agreement_int8
        host_agreement = float((host.argmax(1) == reference.argmax(1)).mean())
        count = 0 if logits is None else len(logits)  # emulation may run a leading subset
        agreement = None if logits is None else float((logits.argmax(1) == reference[:count].argmax(1)).mean())
        note = None
        if method != "runtime" and host_agreement < minimum and (agreement is None or agreement >= minimum):
            note = (
                f"{artifact.name} agrees with its PyTorch model on {host_agreement:.2%} on this host's kernels "
                f"({cpu_name()}), below {minimum:.2%}: a property of this host's int8 "
                f"kernels, not a failure on {placement.target.arch}"
                + (f" ({agreement:.2%} there, {method})" if agreement is not None else "")
            )
        results.append(
            Verification(
                artifact=artifact.name,
                method=method,
                checked_by=checked_by,
                accuracy=None if logits is None else float((logits.argmax(1) == labels[:count]).mean()),
                agreement=agreement,
                min_agreement=minimum,
                passed=agreement is None or agreement >= minimum,
                reference_accuracy=float((reference.argmax(1) == labels).mean()),
                host_accuracy=float((host.argmax(1) == labels).mean()),
                host_agreement=host_agreement,
                max_abs_logit_diff=None if logits is None else float(np.abs(logits - reference[:count]).max()),
                images=count,
                note=note,
            )
        )
    return results
