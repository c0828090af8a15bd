"""Similarity-preserving KD (Tung & Mori, ICCV 2019).

Per layer pair, with F the b x (C*H*W) flattened features of a batch of b:
G = row-wise L2-normalize(F F^T) (b x b), term = sp_weight * ||G_s - G_t||_F^2 / b^2, averaged over
the pairs. Only batch-internal similarities are compared, so the layers' shapes may differ.
"""

import torch
import torch.nn.functional as F
from pydantic import Field

from edgekd.losses.base import LOSSES
from edgekd.losses.hooks import FeatureConfig, FeatureLoss


class SPConfig(FeatureConfig):
    renamed = {"gamma": "write sp_weight (the paper's gamma)"}

    sp_weight: float = Field(3000.0, gt=0, description="weight of the similarity term (the paper's gamma, CIFAR)")


def _similarity(f: torch.Tensor) -> torch.Tensor:
    f = f.flatten(1)
    return F.normalize(f @ f.t(), dim=1)


@LOSSES.register("sp")
class SP(FeatureLoss):
    Config = SPConfig

    def pair_term(self, i: int, fs: torch.Tensor, ft: torch.Tensor) -> torch.Tensor:
        b = len(fs)
        return self.config.sp_weight * (_similarity(fs) - _similarity(ft)).pow(2).sum() / b**2
