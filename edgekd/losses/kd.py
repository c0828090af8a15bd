"""Hinton KD (Hinton et al. 2015): ce_weight * CE(labels) + kd_weight * T^2 * KL(teacher_T || student_T).

Optional temperature schedules (edgekd.losses.schedules), by the options set:
- `temperature_end` alone: linear from `temperature` T0 (epoch 0) to T1 = `temperature_end`
  (epoch `schedule_epochs` and later, by default the run's end): T(e) = T0 + (T1 - T0) * min(e / schedule_epochs, 1).
- `temperature_decay` d: exponential, T(e) = max(T0 * d^e, floor), the floor `temperature_end`
  when set, else 1 ("T0 = 10 halved every epoch": temperature 10, temperature_decay 0.5).
Without either T is constant, as before.
"""

import torch
from pydantic import Field, model_validator

from edgekd.losses.base import LOSSES, DistillLoss, LossConfig, soft_kl, standardized
from edgekd.losses.schedules import check_temperature_schedule, temperature_at

UNKNOWN_RUN_SCHEDULE = 10.0  # a loss used outside a run: the length edgekd used before scaling
ALPHA_RENAMED = {
    "alpha": "write ce_weight = 1 - alpha and kd_weight = alpha (alpha = 0.9: ce_weight = 0.1, kd_weight = 0.9)"
}


class KDConfig(LossConfig):
    renamed = ALPHA_RENAMED

    temperature: float = Field(4.0, gt=0, description="T, or the starting T of a schedule")
    ce_weight: float = Field(0.1, ge=0, description="weight of CE on the labels")
    kd_weight: float = Field(0.9, ge=0, description="weight of the KD term")
    temperature_end: float | None = Field(
        None, gt=0, description="final T: of the linear schedule, or the floor of the exponential one; None: constant T"
    )
    schedule_epochs: float | None = Field(
        None, gt=0, description="epochs the linear schedule takes to reach temperature_end; None: the whole run"
    )
    temperature_decay: float | None = Field(
        None, gt=0, lt=1, description="exponential schedule: T = temperature * temperature_decay^epoch, floored"
    )
    standardize: bool = Field(False, description="z-score each image's logits before T (logit standardization)")

    @model_validator(mode="after")
    def _one_schedule(self) -> "KDConfig":
        c = self
        check_temperature_schedule(c.temperature, c.temperature_end, c.temperature_decay, c.model_fields_set)
        return self


@LOSSES.register("kd")
class KD(DistillLoss):
    Config = KDConfig

    def __init__(self, config: KDConfig):
        super().__init__(config)
        self.uses_teacher = config.kd_weight > 0  # kd_weight = 0 is plain CE: no teacher forward needed

    def temperature(self) -> float:
        c = self.config
        length = self.scaled_length(c.schedule_epochs, 1.0, UNKNOWN_RUN_SCHEDULE)
        return temperature_at(self.epoch, c.temperature, c.temperature_end, c.temperature_decay, length)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        c = self.config
        ce = self.ce(student, target)
        if not self.uses_teacher:
            return c.ce_weight * ce
        s, t = (standardized(student), standardized(teacher)) if c.standardize else (student, teacher)
        return c.ce_weight * ce + c.kd_weight * soft_kl(s, t, self.temperature())


def ce_plus_kd(kd_weight: float, temperature: float, label_smoothing: float = 0.0) -> KD:
    """CE + kd_weight * KD_T as a KD loss: the same objective scaled by 1 / (1 + kd_weight)."""
    weights = {"ce_weight": 1 / (1 + kd_weight), "kd_weight": kd_weight / (1 + kd_weight)}
    return KD(KDConfig(temperature=temperature, label_smoothing=label_smoothing, **weights))
