"""Multi-teacher logit KD (as in You et al., KDD 2017, with fixed teacher weights).

Soft target p = sum_k w_k softmax(t_k / T), w normalized to sum 1 (equal when not given);
loss = ce_weight * CE(labels) + kd_weight * T^2 * KL(p || softmax(s / T)).
Teacher logits come stacked batch first, [batch, n_teachers, classes], as `TeacherEnsemble`
returns them (teachers in the order teacher.path, then teacher.extra; weights follow it);
a plain [batch, classes] is one teacher.
"""

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field

from edgekd.errors import EdgekdError
from edgekd.losses.base import LOSSES, DistillLoss, LossConfig, kl_to_probs
from edgekd.losses.kd import ALPHA_RENAMED


class MultiTeacherConfig(LossConfig):
    renamed = ALPHA_RENAMED

    weights: list[Annotated[float, Field(gt=0)]] | None = Field(
        None, min_length=1, description="one weight per teacher, normalized to sum 1; None: equal"
    )
    temperature: float = Field(4.0, gt=0)
    ce_weight: float = Field(0.1, ge=0, description="weight of CE on the labels")
    kd_weight: float = Field(0.9, ge=0, description="weight of the KD term")


@LOSSES.register("multi_teacher")
class MultiTeacher(DistillLoss):
    Config = MultiTeacherConfig

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        c, t = self.config, self.config.temperature
        stacked = teacher if teacher.dim() == 3 else teacher[:, None]
        n = stacked.shape[1]
        w = torch.tensor(c.weights or [1.0] * n, dtype=student.dtype, device=student.device)
        if len(w) != n:
            raise EdgekdError(f"multi_teacher: {len(w)} weights given for {n} teachers")
        probs = torch.einsum("k,bkc->bc", w / w.sum(), F.softmax(stacked / t, dim=2))
        return c.ce_weight * self.ce(student, target) + c.kd_weight * kl_to_probs(student, probs, t)
