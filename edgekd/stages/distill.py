"""Distill a teacher into a mobile student."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from edgekd.data.loading import Data
from edgekd.errors import EdgekdError
from edgekd.io import atomic_path, sha256
from edgekd.losses import DistillLoss, StudentSpec, create_loss
from edgekd.models import create_model
from edgekd.progress import log
from edgekd.training import distributed
from edgekd.training.checkpoints import StudentCheckpoint
from edgekd.training.collapse import CollapseGuard
from edgekd.training.loop import TrainConfig, accuracy, fit, predict, seed_torch
from edgekd.training.teacher_checks import check_finite


class StudentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("mobilenet_v2", description="an edgekd.models name, or timm:NAME")
    small_input: bool = Field(True, description="stride-1 stem for small images (32x32 and below)")
    weights: str = Field(
        "none",
        description="where the student starts: none (random), default (the library's pretrained weights, "
        "downloaded once into its cache) or a state_dict / safetensors file; the classifier starts fresh",
    )


class DistillConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    loss: str = "kd"
    params: dict[str, Any] = Field({}, description="options of the chosen loss")
    train: TrainConfig = TrainConfig(epochs=10, lr=0.05)
    generations: int = Field(1, ge=1, description="born-again networks: each a fresh student taught by the last")


def teacher_logits_cache(teacher: nn.Module, data: Data, path: Path) -> np.ndarray:
    """The teacher's logits for every training item, computed in one pass and memory-mapped.

    Valid only when a training item looks the same every time it is loaded: no augmentation,
    or `augment_views` fixed augmentations per image (one cached row per image and view).
    With a fresh augmentation every epoch the teacher runs online instead (`use_cache`).
    """
    rows = len(data.train) * (data.views or 1)
    if not path.is_file():
        logits = predict(teacher, data.loader("train"))[0]
        check_finite(logits, "the teacher", "train")  # checked on val already; train/ may hold others
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, logits.numpy())
    cache = np.load(path, mmap_mode="r")
    if len(cache) != rows:
        raise EdgekdError(f"teacher logits cache {path} holds {len(cache)} rows, not {rows}; delete it")
    return cache


def use_cache(loss: DistillLoss, data: Data) -> bool:
    return loss.uses_teacher and data.views is not None and not loss.uses_teacher_features


def distillation_step(loss: DistillLoss, teacher: nn.Module, cache: np.ndarray | None = None):
    """A training-step loss: the student learns from the frozen teacher's outputs, read from
    `cache` by dataset index when given (the loader then yields indices)."""

    def step(student: nn.Module, batch: list[torch.Tensor]) -> torch.Tensor:
        images, labels = batch[0], batch[1]
        teacher_logits = None  # for methods that learn without a teacher (loss.uses_teacher False)
        if cache is not None:
            rows = cache[batch[2].cpu().numpy()]
            teacher_logits = torch.from_numpy(np.ascontiguousarray(rows)).to(images.device)
        elif loss.uses_teacher:
            with torch.no_grad():
                teacher_logits = teacher(images)
        return loss(student(images), teacher_logits, labels)

    return step


def load_student(path: Path) -> tuple[nn.Module, StudentCheckpoint]:
    ckpt = StudentCheckpoint.load(path)
    model = create_model(ckpt.arch, ckpt.num_classes, ckpt.small_input)
    model.load_state_dict(ckpt.state_dict)
    return model.eval(), ckpt


def distill(
    cfg: DistillConfig,
    student: StudentConfig,
    data: Data,
    teacher: nn.Module,
    out_dir: Path,
    logits_cache: Path | None = None,
    teacher_accuracy: float | None = None,
) -> Path:
    """Trains `student` against `teacher`; returns the student checkpoint `student_fp32.pt`.

    With `cfg.generations` N > 1 (born-again networks, Furlanello et al. 2018), generation g + 1 is
    a fresh student taught by generation g's; each finished generation g < N is kept as
    `student_gen{g}.pt` and reused by a rerun, and the last one is the result.
    `logits_cache`: where the given teacher's training-set logits are kept between epochs and runs.
    `teacher_accuracy` (on the validation images), when known, also stops a student stuck at chance
    (`edgekd.training.collapse`).
    """
    n, cache = cfg.generations, logits_cache
    for g in range(1, n + 1):
        path = out_dir / ("student_fp32.pt" if g == n else f"student_gen{g}.pt")
        if not path.is_file():
            generation = f" generation {g}/{n}" if n > 1 else ""
            checkpoint = out_dir / ("distill.ckpt" if g == n else f"distill-gen{g}.ckpt")
            seed_torch(data.config.seed, g)  # the student's initial weights; each generation its own
            _distill_one(cfg, student, data, teacher, path, checkpoint, cache, generation, teacher_accuracy)
        if g < n:
            teacher, teacher_ckpt = load_student(path)
            teacher_accuracy = teacher_ckpt.val_accuracy
            if cache is not None:  # the given teacher's logits do not apply: this student's get their own
                cache = out_dir / f"teacher-logits-{sha256(path)[:12]}.npy"
    return path


def train_with_teacher(
    model: nn.Module,
    loss: DistillLoss,
    teacher: nn.Module,
    data: Data,
    train: TrainConfig,
    label: str,
    checkpoint: Path,
    logits_cache: Path | None,
    schedules: bool = True,
    mixed_precision: bool = True,
    section: str = "distill.train",
    teacher_accuracy: float | None = None,
) -> float:
    """The one distillation training loop, for distill and for QAT: attaches `loss` to both
    models, trains `model` (resuming from `checkpoint`), detaches, returns the val accuracy.
    `schedules`: the loss's warm-ups and schedules follow the run, step by step; False starts them at their
    end (a student already distilled). `label` may hold `{cached}`, filled when the teacher's
    logits come from `logits_cache`. `section`: where `train` is set, for messages.
    `teacher_accuracy`: the teacher's on the validation images, when known, for the collapse guard."""
    loss.attach(model, teacher)
    teacher.eval()
    if not schedules:
        loss.skip_schedules()
    cached = use_cache(loss, data) and logits_cache is not None
    with distributed.main_first():  # rank 0 computes the cache, the others read it
        cache = teacher_logits_cache(teacher, data, logits_cache) if cached else None

    def set_position(epochs_done: float) -> None:
        loss.epoch = epochs_done

    loss.run_epochs = train.epochs  # the lengths of warm-ups and schedules the config leaves unset
    val = data.loader("val")

    def val_accuracy(trained: nn.Module) -> float:
        return accuracy(*predict(trained, val))

    title = label.format(cached=", cached teacher" if cached else "")
    guard = CollapseGuard(title, loss.collapse_fix(section), len(data.classes), val_accuracy, teacher_accuracy)
    fit(
        model,
        data.loader("train", shuffle=True, with_index=cached),
        distillation_step(loss, teacher, cache),
        train,
        title,
        checkpoint=checkpoint,
        on_step=set_position if schedules else None,
        check_epoch=guard,
        extra=loss,
        teacher=teacher,
        mixed_precision=mixed_precision,
        seed=data.config.seed,
        evaluate=val_accuracy,  # for train.keep = "best"
        section=section,
    )
    loss.detach()
    return val_accuracy(model)


def _distill_one(
    cfg: DistillConfig,
    student: StudentConfig,
    data: Data,
    teacher: nn.Module,
    path: Path,
    checkpoint: Path,
    logits_cache: Path | None,
    generation: str,
    teacher_accuracy: float | None,
) -> None:
    spec = StudentSpec(student.name, len(data.classes), student.small_input, data.config.input_size)
    model = create_model(student.name, len(data.classes), student.small_input, student.weights)
    loss = create_loss(cfg.loss, cfg.params, spec)
    label = f"distill {student.name}{generation} ({cfg.loss}{{cached}})"
    val_accuracy = train_with_teacher(
        model, loss, teacher, data, cfg.train, label, checkpoint, logits_cache, teacher_accuracy=teacher_accuracy
    )
    if generation:
        log(f"distill{generation}: val accuracy {val_accuracy:.2%}")
    StudentCheckpoint(
        arch=student.name,
        num_classes=len(data.classes),
        small_input=student.small_input,
        preprocessing=data.preprocessing(),
        state_dict=model.state_dict(),
        val_accuracy=val_accuracy,
    ).save(path)
