"""8-bit quantization-aware fine-tuning, with the distillation loss still on.

A backend (`edgekd.quantizers`) inserts the fake quantizers in the scheme its formats' int8
kernels compute: NNCF for onnxruntime and OpenVINO, PT2E with the XNNPACK quantizer for
ExecuTorch. Each trains its own copy of the distilled student here, the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from edgekd.data.loading import Data
from edgekd.losses import create_loss
from edgekd.quantizers import QUANTIZERS
from edgekd.stages.distill import load_student, train_with_teacher
from edgekd.targets import Int8Flavour
from edgekd.training.checkpoints import QatCheckpoint
from edgekd.training.loop import TrainConfig

EXPORT_CALIBRATION = 32  # images kept in the QAT checkpoint for the export


class QuantizeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    calibration_samples: int = Field(300, ge=1)
    loss: str | None = Field(None, description="distillation loss during QAT; empty = the distill stage's")
    params: dict[str, Any] | None = None
    train: TrainConfig = TrainConfig(epochs=2, lr=0.005, schedule="cosine")


def calibration_images(data: Data, count: int) -> list[torch.Tensor]:
    images, seen = [], 0
    for batch, _ in data.loader("train", shuffle=False, batch_size=min(count, 64)):
        images.append(batch)
        seen += len(batch)
        if seen >= count:
            break
    return images


def load_quantized(path: Path) -> tuple[nn.Module, QatCheckpoint]:
    """The trained int8 student saved by `quantize`, as the export reads it, whichever backend trained it."""
    ckpt = QatCheckpoint.load(path)
    return QUANTIZERS.get(ckpt.quantizer).load(path)


def quantize(
    cfg: QuantizeConfig,
    student_path: Path,
    data: Data,
    teacher: nn.Module,
    flavour: Int8Flavour,
    distill_loss: tuple[str, dict],
    out_dir: Path,
    logits_cache: Path | None = None,
    quantizer: str = "nncf",
) -> Path:
    """QAT of the distilled student by the `quantizer` backend; returns the checkpoint `student_int8_qat.pt`."""
    backend = QUANTIZERS.get(quantizer)
    backend.check_installed()
    model, ckpt = load_student(student_path)
    calibration = calibration_images(data, cfg.calibration_samples)
    model = backend.prepare(model, flavour, calibration)
    loss = create_loss(cfg.loss or distill_loss[0], cfg.params if cfg.loss else distill_loss[1]).for_finetuning()
    checkpoint, label = out_dir / "quantize.ckpt", f"quantization-aware training ({backend.title})"
    # the student is distilled already: no warm-up; fake quantization in fp32, as bf16 cannot
    # hold the 8-bit grid exactly
    val_accuracy = train_with_teacher(
        model,
        loss,
        teacher,
        data,
        cfg.train,
        label,
        checkpoint,
        logits_cache,
        schedules=False,
        mixed_precision=False,
        section="quantize.train",
    )
    out = out_dir / "student_int8_qat.pt"
    QatCheckpoint(
        arch=ckpt.arch,
        num_classes=ckpt.num_classes,
        small_input=ckpt.small_input,
        preprocessing=ckpt.preprocessing,
        val_accuracy=val_accuracy,
        int8=backend.scheme(flavour),
        calibration=torch.cat(calibration)[:EXPORT_CALIBRATION].half(),
        quantizer=quantizer,
        **backend.checkpoint_fields(model, calibration),
    ).save(out)
    return out
