"""The distillation-loss interface: one small class per method, each with a typed config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from edgekd.errors import EdgekdError
from edgekd.registry import Registry, did_you_mean


class LossConfig(BaseModel):
    """Options of a loss. Weights follow one convention: `<term>_weight` for every term;
    `ce_weight` weighs CE on the labels and `kd_weight` Hinton KD from the teacher, in every
    method that has those terms. `renamed`: options of earlier versions, each with the new keys."""

    model_config = ConfigDict(extra="forbid")
    renamed: ClassVar[dict[str, str]] = {}

    label_smoothing: float = Field(
        0.0, ge=0, lt=1, description="label smoothing of every cross-entropy term on the labels (0: off)"
    )


@dataclass(frozen=True)
class StudentSpec:
    """What the distill stage knows about the student, for methods that build models of their own
    (DML's peers, self-distillation's heads) before the optimizer exists."""

    arch: str  # an edgekd.models name
    num_classes: int
    small_input: bool
    input_size: int  # side of the training images


SCHEDULES_DONE = 10**6  # an epoch past every warm-up and schedule a loss config can set


class DistillLoss(nn.Module):
    """Maps a batch's student logits, teacher logits and labels to a scalar loss.

    `epoch` is set by the training loop before each step (epochs done, fractional), for warm-ups and
    schedules; `run_epochs`, the run's length, scales the lengths the config leaves unset.
    Feature-based methods override `attach` to hook layers of both models (and may own
    learnable adapters: the loss's own parameters are trained with the student's).
    `uses_teacher_features` tells the distill stage it cannot replace the teacher's
    forward pass by cached logits; `uses_teacher` False that it needs no teacher at all
    (`forward` then gets `teacher=None`). `spec` is set by `create_loss` when given.
    """

    uses_teacher_features: ClassVar[bool] = False
    uses_teacher: bool = True

    Config: ClassVar[type[LossConfig]] = LossConfig

    def __init__(self, config: LossConfig):
        super().__init__()
        self.config = config
        self.epoch: float = 0  # epochs done before this step (fractional: the loop sets it every step)
        self.run_epochs: int | None = None  # the run's length, set by the distill stage (`scaled_length`)
        self.spec: StudentSpec | None = None

    def ce(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy on the labels, with the config's label smoothing."""
        return F.cross_entropy(logits, target, label_smoothing=self.config.label_smoothing)

    def scaled_length(self, chosen: float | None, share: float, unknown_run: float, at_least: float = 1.0) -> float:
        """A warm-up's or schedule's length in epochs: `chosen` when the config sets it, else `share`
        of the run (the share the method's paper used), and at least `at_least` epochs or the whole
        run when shorter, so that a short run ramps as gently as a long one; `unknown_run` for a
        loss used outside a training run."""
        if chosen is not None:
            return chosen
        if self.run_epochs is None:
            return unknown_run
        return max(share * self.run_epochs, min(at_least, self.run_epochs))

    def collapse_fix(self, train_section: str) -> str:
        """The settings to change when a student collapses under this loss (`edgekd.training.collapse`)."""
        return f"lower {train_section}.lr, or this loss's weights in distill.params"

    def skip_schedules(self) -> None:
        """Every warm-up and schedule at its end value, for fine-tuning a student that is
        already distilled (QAT): the epoch is set past any schedule's length."""
        self.epoch = SCHEDULES_DONE

    def require_spec(self, name: str) -> StudentSpec:
        if self.spec is None:
            raise EdgekdError(
                f"{name} builds models of its own: create it with create_loss(..., spec=StudentSpec(...))"
            )
        return self.spec

    def check_student(self, arch: str) -> None:
        """Raises EdgekdError when the options do not fit a student of architecture `arch`;
        called when the pipeline config is read, before any training."""

    def for_finetuning(self) -> DistillLoss:
        """The loss for fine-tuning the distilled student (QAT). Methods whose own trained models
        (peers, heads) would start over from scratch there return a plain logit loss instead."""
        return self

    def attach(self, student: nn.Module, teacher: nn.Module) -> None:
        """Called once before training (and before the optimizer is built), with both models."""

    def detach(self) -> None:
        """Called once after training: undoes `attach` (removes hooks) so exported models are clean."""

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


LOSSES: Registry[type[DistillLoss]] = Registry("distillation loss")


def create_loss(name: str, params: dict[str, Any] | None = None, spec: StudentSpec | None = None) -> DistillLoss:
    cls = LOSSES.get(name)
    params = params or {}
    valid = list(cls.Config.model_fields)
    for key in params:
        if key in cls.Config.renamed:
            raise EdgekdError(f"loss '{name}' option '{key}' is renamed: {cls.Config.renamed[key]}")
        if key not in valid:
            raise EdgekdError(
                f"unknown option '{key}' for loss '{name}'{did_you_mean(key, valid)}; valid: {', '.join(valid)}"
            )
    try:
        loss = cls(cls.Config(**params))
    except ValidationError as e:
        err = e.errors()[0]
        # a validator's own message (e.g. an unknown model name) without pydantic's "Value error, "
        msg = str(err["ctx"]["error"]) if err["type"] == "value_error" else err["msg"]
        # a model validator (options contradicting each other) has no one option: its message names them
        where = f" option '{err['loc'][0]}'" if err["loc"] else ""
        raise EdgekdError(f"loss '{name}'{where}: {msg}") from None
    loss.spec = spec
    return loss


def kl_to_probs(
    student: torch.Tensor, target_probs: torch.Tensor, temperature: float, reduction: str = "mean"
) -> torch.Tensor:
    """T^2 * KL(p || softmax(s/T)), summed over classes; batch mean, or per sample with reduction="none".

    `target_probs` p is any distribution (one teacher's, a mix of teachers'); xlogy makes p=0 terms 0.
    """
    log_q = F.log_softmax(student / temperature, dim=1)
    kl = (torch.xlogy(target_probs, target_probs) - target_probs * log_q).sum(dim=1) * temperature**2
    return kl.mean() if reduction == "mean" else kl


def standardized(logits: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Each row z-scored: (z - mean) / std (Sun et al., "Logit Standardization in Knowledge
    Distillation", CVPR 2024): the student then matches the teacher's logit relations, not
    their scale. std is the unbiased one, as the authors' code."""
    return (logits - logits.mean(1, keepdim=True)) / (logits.std(1, keepdim=True) + eps)


def soft_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(t/T) || softmax(s/T)), summed over classes, batch mean, times T^2 (Hinton 2015)."""
    return kl_to_probs(student, F.softmax(teacher / temperature, dim=1), temperature)
