"""A distillation whose student collapses stops, before the collapsed epoch is checkpointed, with
one line naming the method, the epoch and the setting to change, so that no report ever offers
a collapsed student. A build trains no student alone to compare with, so the student is compared
with itself and with chance: it collapsed when its validation accuracy falls below half of its
best epoch's (once that was at least twice chance), or when from the third epoch on it is still
below one and a half times chance while the teacher (when its accuracy is known) is at least
three times chance (DKD at full NCKD weight from the first step at lr 0.1: 11.6% on CIFAR-10
after 3 epochs, beside 37.7% alone; 12.8% with a one-epoch ramp from 0)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from edgekd.errors import EdgekdError


@dataclass
class CollapseGuard:
    label: str  # what is trained, e.g. "distill mobilenet_v2 (dkd)"
    fix: str  # the settings to change, from the loss (`DistillLoss.collapse_fix`)
    num_classes: int
    student_accuracy: Callable[[nn.Module], float]  # on the validation images
    teacher_accuracy: float | None  # on the same images, when known: else a student stuck at chance goes on
    best: float = 0.0

    def __call__(self, epoch: int, epochs: int, model: nn.Module) -> None:
        """After epoch `epoch` (from 0) of `epochs`, before its checkpoint."""
        score, chance = self.student_accuracy(model), 1.0 / self.num_classes
        fell = self.best >= 2 * chance and score < self.best / 2
        self.best = max(self.best, score)
        if fell:
            why = f"val accuracy fell to {score:.1%} from {self.best:.1%}"
        elif epoch >= 2 and score <= 1.5 * chance and (self.teacher_accuracy or 0) >= 3 * chance:
            why = f"val accuracy is {score:.1%}, chance is {chance:.1%}, the teacher's {self.teacher_accuracy:.1%}"
        else:
            return
        kept = f"epoch {epoch}'s checkpoint stays" if epoch else "no epoch is kept"
        raise EdgekdError(
            f"{self.label}: the student collapsed in epoch {epoch + 1}/{epochs} ({why}); {self.fix}; {kept}"
        )
