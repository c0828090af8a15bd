"""KD with a per-sample weight on the KD term, from the teacher's (and student's) difficulty.

loss = ce_weight * CE + kd_weight * mean_i(w_i * T^2 * KL_i(teacher_T || student_T)), where
- mode "teacher_confidence": w_i = 1 - p_teacher(y_i) (softmax at T = 1): samples the teacher
  is unsure of carry more dark knowledge; confidently right ones are nearly one-hot, like CE.
- mode "ce_ratio" (weighted soft labels, Zhou et al., ICLR 2021): w_i = 1 - exp(-CE_s,i / CE_t,i):
  less KD where the teacher fits the label worse than the student does.
Weights carry no gradient and are normalized to mean 1 over the batch (all 1 if they are all 0),
so kd_weight keeps its meaning; WSLD itself uses the raw weights.
"""

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from edgekd.losses.base import LOSSES, DistillLoss, LossConfig, kl_to_probs
from edgekd.losses.kd import ALPHA_RENAMED


class DynamicConfig(LossConfig):
    renamed = ALPHA_RENAMED

    mode: Literal["teacher_confidence", "ce_ratio"] = "teacher_confidence"
    temperature: float = Field(4.0, gt=0)
    ce_weight: float = Field(0.1, ge=0, description="weight of CE on the labels")
    kd_weight: float = Field(0.9, ge=0, description="weight of the KD term")


@LOSSES.register("dynamic")
class DynamicKD(DistillLoss):
    Config = DynamicConfig

    @torch.no_grad()
    def weights(self, student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce_t = F.cross_entropy(teacher, target, reduction="none")
        if self.config.mode == "teacher_confidence":
            w = 1 - torch.exp(-ce_t)  # exp(-CE) is p_teacher(y)
        else:
            w = 1 - torch.exp(-F.cross_entropy(student, target, reduction="none") / ce_t.clamp_min(1e-12))
        mean = w.mean()  # torch.where, not `if`: no device sync
        return torch.where(mean > 0, w / mean.clamp_min(1e-12), torch.ones_like(w))

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        c, t = self.config, self.config.temperature
        kl = kl_to_probs(student, F.softmax(teacher / t, dim=1), t, reduction="none")
        kd = (self.weights(student, teacher, target) * kl).mean()
        return c.ce_weight * self.ce(student, target) + c.kd_weight * kd
