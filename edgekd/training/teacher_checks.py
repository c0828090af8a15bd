"""A given teacher, checked on the val split before any training: a teacher that cannot teach
(NaN outputs, a wrong class order or normalisation) stops the run here rather than shipping a
student distilled from it; one that outputs probabilities is distilled from their logarithms."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from edgekd.data.loading import Data
from edgekd.errors import EdgekdError
from edgekd.progress import log
from edgekd.training.loop import accuracy, predict
from edgekd.training.teachers import TeacherEnsemble

# what usually puts a trained teacher at chance on the right data
CHANCE_CAUSES = (
    "the class folders in another order than the teacher's classes, or other data.mean / data.std, "
    "input size or channel order (edgekd feeds RGB) than it was trained with"
)


class LogProbabilities(nn.Module):
    """A teacher that outputs probabilities, as logits: their logarithms, which softmax maps back
    to the same probabilities (and temperature scales as it scales logits)."""

    def __init__(self, teacher: nn.Module):
        super().__init__()
        self.teacher = teacher
        self.opaque = getattr(teacher, "opaque", None)  # edgekd.losses.hooks: no layers to hook either way

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # a float32 softmax underflows to exactly 0 for very unlikely classes: log(0) would be -inf
        return self.teacher(images).float().clamp(min=torch.finfo(torch.float32).tiny).log()


def check_finite(outputs: torch.Tensor, who: str, split: str) -> None:
    """Stops the run when any image's outputs hold NaN or infinity."""
    bad = int((~torch.isfinite(outputs.flatten(1))).any(dim=1).sum())
    if bad:
        raise EdgekdError(
            f"{who} outputs NaN or infinity for {bad} of {len(outputs)} {split} images; a student cannot learn "
            "from them: re-export the teacher from a model whose outputs are finite (NaN weights, or float16 "
            "overflow, are the usual causes)"
        )


def are_probabilities(outputs: torch.Tensor) -> bool:
    """Every row in [0, 1] and summing to 1: a softmax's output, not logits."""
    return bool(((outputs >= 0) & (outputs <= 1)).all() and ((outputs.sum(1) - 1).abs() < 1e-3).all())


@dataclass
class CheckedTeacher:
    model: nn.Module  # the given teacher, as logits (LogProbabilities when it outputs probabilities)
    val_logits: torch.Tensor  # [images, classes]; an ensemble's [images, teachers, classes]
    val_labels: torch.Tensor


def checked_teacher(teacher: nn.Module, path: Path, data: Data, check_accuracy: bool) -> CheckedTeacher:
    """One teacher checked on the val split: finite outputs, logits, above chance."""
    logits, labels = predict(teacher, data.loader("val"))
    check_finite(logits, f"teacher {path}", "val")
    if are_probabilities(logits):
        log(f"teacher {path}: its outputs are probabilities (each row in [0, 1], summing to 1), not logits; "
            "distilling from their logarithms, which are logits of the same prediction")  # fmt: skip
        teacher = LogProbabilities(teacher)
        logits = logits.clamp(min=torch.finfo(torch.float32).tiny).log()
    score, chance = accuracy(logits, labels), 1 / len(data.classes)
    if check_accuracy and score <= chance:
        raise EdgekdError(
            f"teacher {path} scores {score:.2%} on the {len(labels)} val images, at or below chance for "
            f"{len(data.classes)} classes ({chance:.2%}); usually {CHANCE_CAUSES}: fix that, or set "
            "teacher.check_accuracy = false to distill from it anyway"
        )
    return CheckedTeacher(teacher, logits, labels)


def checked_teachers(teacher: nn.Module, paths: list[Path], data: Data, check_accuracy: bool) -> CheckedTeacher:
    """`checked_teacher` for a teacher file, or for each member of a `TeacherEnsemble` of them."""
    if not isinstance(teacher, TeacherEnsemble):
        return checked_teacher(teacher, paths[0], data, check_accuracy)
    members = [checked_teacher(m, p, data, check_accuracy) for m, p in zip(teacher.teachers, paths, strict=True)]
    logits = torch.stack([m.val_logits for m in members], dim=1)
    return CheckedTeacher(TeacherEnsemble([m.model for m in members]), logits, members[0].val_labels)
