"""CTKD (Li et al., "Curriculum Temperature for Knowledge Distillation", AAAI 2023): Hinton KD with
one temperature that is learned adversarially, against the student, harder epoch by epoch.

loss = ce_weight * CE + kd_weight * T^2 * KL(softmax(t/T) || softmax(s/T)), with
T = temperature_min + (temperature_max - temperature_min) * sigmoid(p), p (`temperature_logit`) a
parameter of this loss, trained by the student's optimizer. p is reached through a gradient reversal
layer (Ganin & Lempitsky 2015; identity forward, gradient times -lambda backward), so each descent
step moves T to raise the KD loss while the student lowers it. The curriculum raises lambda by a cosine:
lambda(e) = lambda_min + (lambda_max - lambda_min) * (1 - cos(pi * min(e / curriculum_epochs, 1))) / 2.

Followed: the paper's Eq. for lambda_n and the authors' code (github.com/zhengli97/CTKD:
models/temp_global.py Global_T, helper/loops.py, train_student.py CosineDecay,
scripts/run_cifar_distill.sh): p starts at 1; T = t_start + t_end * sigmoid(p) with t_start 1,
t_end 20 (here temperature_min 1, temperature_max 21); lambda from 0 to 1 over 10 epochs (their
decay_max 0, decay_min -1, decay_loops 10 into a layer multiplying the gradient by that negative
value); gamma 0.1, alpha 0.9 (ce_weight, kd_weight). Their epochs count from 1, ours from 0, so
the curriculum starts at lambda_min (no adversary) at the first step, and rises step by step.
Unset, `curriculum_epochs` is their share of the run, 10 of 240 epochs, and at least one epoch.
"""

import math

import torch
from pydantic import Field, model_validator
from torch import nn

from edgekd.losses.base import LOSSES, DistillLoss, LossConfig, soft_kl
from edgekd.losses.kd import ALPHA_RENAMED
from edgekd.losses.schedules import cosine_rise

CURRICULUM_SHARE = 10 / 240  # the authors' CIFAR-100 recipe
UNKNOWN_RUN_CURRICULUM = 10.0  # a loss used outside a run: the authors' 10 epochs


class CTKDConfig(LossConfig):
    renamed = ALPHA_RENAMED

    ce_weight: float = Field(0.1, ge=0, description="weight of CE on the labels")
    kd_weight: float = Field(0.9, ge=0, description="weight of the KD term")
    temperature_min: float = Field(1.0, gt=0, description="lowest T the learned temperature can reach")
    temperature_max: float = Field(21.0, gt=0, description="highest T the learned temperature can reach")
    temperature_init: float | None = Field(
        None, description="T at the start; None: the authors' (p = 1: T = 15.6 with the default range)"
    )
    lambda_min: float = Field(0.0, ge=0, description="gradient reversal strength in the first epoch")
    lambda_max: float = Field(1.0, ge=0, description="gradient reversal strength from curriculum_epochs on")
    curriculum_epochs: float | None = Field(
        None, gt=0, description="epochs lambda takes to rise to lambda_max; None: 1/24 of the run, at least 1"
    )

    @model_validator(mode="after")
    def _consistent(self) -> "CTKDConfig":
        lo, hi, init = self.temperature_min, self.temperature_max, self.temperature_init
        if hi <= lo:
            raise ValueError(f"temperature_max {hi:g} must be above temperature_min {lo:g}")
        if init is not None and not lo < init < hi:
            raise ValueError(f"temperature_init {init:g} must lie strictly between temperature_min and temperature_max")
        if self.lambda_max < self.lambda_min:
            raise ValueError(
                f"lambda_max {self.lambda_max:g} is below lambda_min {self.lambda_min:g}: lambda must rise"
            )
        return self


class GradientReversal(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by -lambda."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lambda_: float) -> torch.Tensor:
        ctx.lambda_ = lambda_
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.lambda_ * grad, None


@LOSSES.register("ctkd")
class CTKD(DistillLoss):
    Config = CTKDConfig

    def __init__(self, config: CTKDConfig):
        super().__init__(config)
        lo, hi, init = config.temperature_min, config.temperature_max, config.temperature_init
        p = 1.0 if init is None else math.log((init - lo) / (hi - init))  # sigmoid(p) = (init - lo) / (hi - lo)
        self.temperature_logit = nn.Parameter(torch.tensor(p))

    def reversal(self) -> float:
        """This epoch's lambda of the curriculum (its end after `skip_schedules`)."""
        c = self.config
        length = self.scaled_length(c.curriculum_epochs, CURRICULUM_SHARE, UNKNOWN_RUN_CURRICULUM)
        return cosine_rise(c.lambda_min, c.lambda_max, self.epoch, length)

    def learned_temperature(self) -> torch.Tensor:
        c = self.config
        p = GradientReversal.apply(self.temperature_logit, self.reversal())
        return c.temperature_min + (c.temperature_max - c.temperature_min) * torch.sigmoid(p)

    def temperature(self) -> float:
        """The current T, for logs."""
        return float(self.learned_temperature().detach())

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        c = self.config
        kd = soft_kl(student, teacher, self.learned_temperature())  # T a tensor: its gradient reaches p
        return c.ce_weight * self.ce(student, target) + c.kd_weight * kd
