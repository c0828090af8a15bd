"""DIST (Huang et al., NeurIPS 2022): match the teacher's relations, not its exact probabilities.

With Y_s = softmax(z_s / T), Y_t = softmax(z_t / T) over a batch (rows: images, columns: classes)
and rho the Pearson correlation:
  inter = T^2 * mean_i (1 - rho(Y_s[i, :], Y_t[i, :]))   (how each image ranks the classes)
  intra = T^2 * mean_c (1 - rho(Y_s[:, c], Y_t[:, c]))   (how each class ranks the images)
loss = ce_weight * CE + inter_weight * inter + intra_weight * intra, as the authors' code
(beta = gamma = 1, T = 1 on ImageNet). `standardize` z-scores the logits first (Sun et al.).
"""

import torch
from pydantic import Field

from edgekd.losses.base import LOSSES, DistillLoss, LossConfig, standardized


class DISTConfig(LossConfig):
    ce_weight: float = Field(1.0, ge=0, description="weight of CE on the labels")
    inter_weight: float = Field(1.0, ge=0, description="weight of the inter-class relation term (the paper's beta)")
    intra_weight: float = Field(1.0, ge=0, description="weight of the intra-class relation term (the paper's gamma)")
    temperature: float = Field(1.0, gt=0, description="T of the softmax (paper: 1 on ImageNet, 4 on CIFAR)")
    standardize: bool = Field(False, description="z-score each image's logits before T (logit standardization)")


def _pearson_rows(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


@LOSSES.register("dist")
class DIST(DistillLoss):
    Config = DISTConfig

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        c, t = self.config, self.config.temperature
        s, te = (standardized(student), standardized(teacher)) if c.standardize else (student, teacher)
        y_s, y_t = (s / t).softmax(1), (te / t).softmax(1)
        inter = t**2 * (1 - _pearson_rows(y_s, y_t)).mean()
        intra = t**2 * (1 - _pearson_rows(y_s.t(), y_t.t())).mean()
        return c.ce_weight * self.ce(student, target) + c.inter_weight * inter + c.intra_weight * intra
