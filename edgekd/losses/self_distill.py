"""Self-distillation, "Be Your Own Teacher" (Zhang et al., ICCV 2019): the network's final output
teaches classifiers on its own earlier layers, whose gradients shape those shared layers.

Auxiliary heads (global-average-pool + linear, or a small bottleneck + pool + linear) read named
student layers through forward hooks. They are parameters of this loss: sized in `attach` by a
dummy forward, trained with the student, never exported. With z the final logits and h_i a head's:
loss = CE(z) [+ kd_weight * T^2 KL(softmax(teacher / T) || softmax(z / T))]
       + sum_i [head_ce_weight CE(h_i) + head_kd_weight * T^2 KL(softmax(z.detach() / T) || softmax(h_i / T))]
(paper: T = 3, alpha = 0.3, i.e. head_ce_weight = 0.7, head_kd_weight = 0.3; its feature-hint
term is left out). QAT fine-tunes the student with CE [+ the teacher term] alone
(`for_finetuning`): heads started over would only add noise.
"""

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from edgekd.errors import EdgekdError
from edgekd.losses.base import LOSSES, DistillLoss, LossConfig, soft_kl
from edgekd.losses.hooks import OutputHooks, dummy_forward, model_device
from edgekd.losses.kd import ce_plus_kd
from edgekd.models import create_model, model_card


class SelfDistillConfig(LossConfig):
    renamed = {
        "alpha": "write head_ce_weight = 1 - alpha and head_kd_weight = alpha",
        "teacher_weight": "write kd_weight",
    }

    layers: list[str] | None = Field(
        None, min_length=1, description="student layers that get a head; None: the architecture's stage ends"
    )
    head: Literal["linear", "bottleneck"] = Field("linear", description="pool + linear, or conv bottleneck first")
    head_width: int = Field(128, ge=1, description="channels of the bottleneck head's convolutions")
    temperature: float = Field(3.0, gt=0, description="T of the KL terms (paper: 3)")
    head_ce_weight: float = Field(0.7, ge=0, description="weight of each head's CE on the labels")
    head_kd_weight: float = Field(0.3, ge=0, description="weight of each head's KD from the final output")
    kd_weight: float = Field(0.0, ge=0, description="weight of Hinton KD from the teacher on the final output")


def _head(kind: str, channels: int, width: int, num_classes: int) -> nn.Module:
    pool = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if kind == "linear":
        return nn.Sequential(*pool, nn.Linear(channels, num_classes))
    return nn.Sequential(
        nn.Conv2d(channels, width, 1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, width, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        *pool,
        nn.Linear(width, num_classes),
    )


@LOSSES.register("self_distill")
class SelfDistill(DistillLoss):
    Config = SelfDistillConfig

    def __init__(self, config: SelfDistillConfig):
        super().__init__(config)
        self.uses_teacher = config.kd_weight > 0
        self.heads = nn.ModuleList()
        self.hooks = OutputHooks([], "student", detach=False)

    def layer_names(self, arch: str) -> list[str]:
        if self.config.layers:
            return self.config.layers
        layers = list(model_card(arch).feature_layers)  # the ends of the stages before the last
        if not layers:
            raise EdgekdError(
                f"self_distill has no default layers for student '{arch}'; set params.layers to some of its "
                "layers (e.g. the last block of each downsampling stage)"
            )
        return layers

    def check_student(self, arch: str) -> None:
        OutputHooks(self.layer_names(arch), "student", detach=False).layers(create_model(arch, 2))

    def attach(self, student: nn.Module, teacher: nn.Module) -> None:
        spec = self.require_spec("self_distill")
        self.hooks.remove()
        self.hooks = OutputHooks(self.layer_names(spec.arch), "student", detach=False)
        self.hooks.attach(self.hooks.layers(student))
        try:
            dummy_forward([student], 3, spec.input_size, "check data.input_size")
            shapes = [f.shape for f in self.hooks.captured(2, "the student")]
            flat = [n for n, s in zip(self.hooks.names, shapes) if len(s) != 4]
            if flat:
                raise EdgekdError(f"self_distill: layers {flat} give no 4-D feature maps; pick convolutional blocks")
        except EdgekdError:
            self.hooks.remove()  # nothing half-attached
            raise
        self.hooks.outputs.clear()
        c = self.config
        heads = [_head(c.head, s[1], c.head_width, spec.num_classes) for s in shapes]
        self.heads = nn.ModuleList(heads).to(model_device(student))

    def detach(self) -> None:
        self.hooks.remove()

    def forward(self, student: torch.Tensor, teacher: torch.Tensor | None, target: torch.Tensor) -> torch.Tensor:
        if not self.heads:
            raise EdgekdError("self_distill: call attach(student, teacher) before training: it creates the heads")
        c, t = self.config, self.config.temperature
        loss = self.ce(student, target)
        if self.uses_teacher:
            loss = loss + c.kd_weight * soft_kl(student, teacher, t)
        final = student.detach()
        for head, feature in zip(self.heads, self.hooks.captured(len(student), "the student")):
            h = head(feature)
            loss = loss + c.head_ce_weight * self.ce(h, target) + c.head_kd_weight * soft_kl(h, final, t)
        return loss

    def for_finetuning(self) -> DistillLoss:
        return ce_plus_kd(self.config.kd_weight, self.config.temperature, self.config.label_smoothing)
