"""Attention transfer (Zagoruyko & Komodakis, ICLR 2017), the authors' code formulation.

a(F) = normalize_L2(flatten(mean_c |F_c|^p)) per sample (p = 2), and per layer pair
at_weight / 2 * mean((a(F_s) - a(F_t))^2), averaged over the pairs. The student's spatial map is
resized bilinearly to the teacher's when they differ (channel counts may differ freely).
"""

import torch
import torch.nn.functional as F
from pydantic import Field

from edgekd.errors import EdgekdError
from edgekd.losses.base import LOSSES
from edgekd.losses.hooks import FeatureConfig, FeatureLoss


class ATConfig(FeatureConfig):
    renamed = {"beta": "write at_weight (the paper's beta)"}

    at_weight: float = Field(1000.0, gt=0, description="weight of the attention term (the paper's beta: 1e3)")
    p: float = Field(2.0, gt=0, description="exponent of |F| in the attention map")


@LOSSES.register("at")
class AT(FeatureLoss):
    Config = ATConfig

    def _map(self, i: int, f: torch.Tensor) -> torch.Tensor:
        if f.dim() != 4:
            raise EdgekdError(f"at: layers {self.config.pairs[i]} give {f.dim()}-D outputs; pick 4-D feature maps")
        return f.abs().pow(self.config.p).mean(1)

    def pair_term(self, i: int, fs: torch.Tensor, ft: torch.Tensor) -> torch.Tensor:
        a_s, a_t = self._map(i, fs), self._map(i, ft)
        if a_s.shape[1:] != a_t.shape[1:]:
            a_s = F.interpolate(a_s[:, None], size=a_t.shape[1:], mode="bilinear", align_corners=False)[:, 0]
        a_s, a_t = F.normalize(a_s.flatten(1), dim=1), F.normalize(a_t.flatten(1), dim=1)
        return self.config.at_weight / 2 * (a_s - a_t).pow(2).mean()
