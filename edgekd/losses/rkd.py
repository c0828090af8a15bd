"""Relational KD (Park et al., CVPR 2019): distance-wise and angle-wise relations of a batch.

On embeddings e (flattened layer outputs; the logits when no `pairs` are given):
distance: psi_D(i, j) = ||e_i - e_j|| / mu, mu the mean of the nonzero distances; smooth-L1
between the student's and the teacher's b x b matrices. angle: psi_A(i, j, k) = <n(e_j - e_i),
n(e_k - e_i)> (n: L2-normalize, 0 for i == j or i == k); smooth-L1 over the b^3 values.
Term = distance_weight * distance + angle_weight * angle (paper: 25, 50), averaged over pairs.
"""

import torch
import torch.nn.functional as F
from pydantic import Field

from edgekd.losses.base import LOSSES
from edgekd.losses.hooks import FeatureConfig, FeatureLoss


class RKDConfig(FeatureConfig):
    pairs: list[tuple[str, str]] = Field(default_factory=list, description="layer pairs; empty: use the logits")
    distance_weight: float = Field(25.0, ge=0)
    angle_weight: float = Field(50.0, ge=0)


def _distances(e: torch.Tensor) -> torch.Tensor:
    # clamp before sqrt keeps the diagonal's gradient finite; the mask then zeroes it
    d = (e[:, None] - e[None]).pow(2).sum(2).clamp_min(1e-12).sqrt()
    d = d * (1 - torch.eye(len(e), device=e.device, dtype=e.dtype))
    mu = d.sum() / (d > 0).sum().clamp_min(1)  # mean nonzero distance; no NaN for a batch of 1
    return d / mu.clamp_min(1e-12)


def _angles(e: torch.Tensor) -> torch.Tensor:
    v = F.normalize(e[None] - e[:, None], dim=2)  # v[i, j] = n(e_j - e_i)
    return torch.bmm(v, v.transpose(1, 2)).flatten()


@LOSSES.register("rkd")
class RKD(FeatureLoss):
    Config = RKDConfig

    def __init__(self, config: RKDConfig):
        super().__init__(config)
        # on logits alone the teacher's features are not needed (cached teacher logits suffice)
        self.uses_teacher_features = bool(config.pairs)

    def feature_pairs(self, student: torch.Tensor, teacher: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return super().feature_pairs(student, teacher) if self.config.pairs else [(student, teacher.detach())]

    def pair_term(self, i: int, fs: torch.Tensor, ft: torch.Tensor) -> torch.Tensor:
        c, es, et = self.config, fs.flatten(1), ft.flatten(1)
        distance = F.smooth_l1_loss(_distances(es), _distances(et))
        angle = F.smooth_l1_loss(_angles(es), _angles(et))
        return c.distance_weight * distance + c.angle_weight * angle
