"""FitNets hints (Romero et al., ICLR 2015): hint_weight * MSE(r(F_s), F_t) per layer pair.

r is a learned 1x1 convolution mapping the student's channels to the teacher's, followed by a
bilinear resize when the spatial sizes differ. Non-4-D features are treated as C x 1 x 1 maps.
The adapters are parameters of this loss, so they must exist before the optimizer is built:
`attach` sizes them from a dummy forward of a 2 x in_channels x input_size x input_size batch
(default 3 x 32 x 32, CIFAR); set those to the training images' when they differ.
"""

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from edgekd.errors import EdgekdError
from edgekd.losses.base import LOSSES
from edgekd.losses.hooks import FeatureConfig, FeatureLoss, model_device


class FitNetConfig(FeatureConfig):
    renamed = {"weight": "write hint_weight"}

    hint_weight: float = Field(100.0, gt=0, description="weight of the hint term (mdistiller's CIFAR value)")
    in_channels: int = Field(3, ge=1, description="channels of the dummy image that sizes the adapters")
    input_size: int = Field(32, ge=1, description="side of the dummy image that sizes the adapters")


def _as_map(x: torch.Tensor) -> torch.Tensor:
    return x if x.dim() == 4 else x.reshape(len(x), -1, 1, 1)


def _channels(shape: torch.Size) -> int:
    return shape[1] if len(shape) == 4 else shape[1:].numel()  # as _as_map sees it


@LOSSES.register("fitnet")
class FitNet(FeatureLoss):
    Config = FitNetConfig

    def __init__(self, config: FitNetConfig):
        super().__init__(config)
        self.adapters = nn.ModuleList()

    def attach(self, student: nn.Module, teacher: nn.Module) -> None:
        super().attach(student, teacher)
        c = self.config
        shapes = self.hooks.probe(student, teacher, c.in_channels, c.input_size)
        adapters = [nn.Conv2d(_channels(s), _channels(t), 1, bias=False) for s, t in shapes]
        self.adapters = nn.ModuleList(adapters).to(model_device(student))

    def pair_term(self, i: int, fs: torch.Tensor, ft: torch.Tensor) -> torch.Tensor:
        if i >= len(self.adapters):
            raise EdgekdError("fitnet: call attach(student, teacher) before training: it creates the adapters")
        hint, ft = self.adapters[i](_as_map(fs)), _as_map(ft)
        if hint.shape[2:] != ft.shape[2:]:
            hint = F.interpolate(hint, size=ft.shape[2:], mode="bilinear", align_corners=False)
        return self.config.hint_weight * F.mse_loss(hint, ft)
