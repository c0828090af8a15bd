"""Shared plumbing of the feature-based losses (FitNets, AT, SP, RKD on layers).

`LayerHooks` keeps the latest output of named (student layer, teacher layer) pairs, captured by
forward hooks while the training step runs both models. `FeatureLoss` is the base class: it hooks
the layers in `attach`, adds the optional logit terms (CE + Hinton KD) and averages the method's
per-pair term over the pairs.
"""

from __future__ import annotations

import difflib

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from edgekd.compute import model_device
from edgekd.errors import EdgekdError
from edgekd.losses.base import DistillLoss, LossConfig, soft_kl
from edgekd.registry import did_you_mean


def find_layer(model: nn.Module, name: str, role: str) -> nn.Module:
    layers = dict(model.named_modules())
    if name not in layers:
        valid = [n for n in layers if n]  # "" is the model itself
        some = difflib.get_close_matches(name, valid, n=6, cutoff=0.4) or valid[:6]
        raise EdgekdError(
            f"the {role} has no layer '{name}'{did_you_mean(name, valid)}; "
            f"valid names include: {', '.join(some) or '(none)'}"
        )
    return layers[name]


class LayerHooks:
    """Forward hooks storing, per pair index, the student layer's output (with its graph) and the
    teacher layer's output (detached: the teacher is never trained)."""

    def __init__(self, pairs: list[tuple[str, str]]):
        self.pairs = list(pairs)
        self.student: dict[int, torch.Tensor] = {}
        self.teacher: dict[int, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def attach(self, student: nn.Module, teacher: nn.Module) -> None:
        self.remove()
        # resolve every name first, so a typo leaves no half-hooked models behind
        layers = [(find_layer(student, s, "student"), find_layer(teacher, t, "teacher")) for s, t in self.pairs]
        for i, (s_layer, t_layer) in enumerate(layers):
            self._handles.append(s_layer.register_forward_hook(self._keep(self.student, i, detach=False)))
            self._handles.append(t_layer.register_forward_hook(self._keep(self.teacher, i, detach=True)))

    @staticmethod
    def _keep(store: dict[int, torch.Tensor], i: int, detach: bool):
        def hook(module: nn.Module, inputs: tuple, output) -> None:
            out = output[0] if isinstance(output, (tuple, list)) else output
            store[i] = out.detach() if detach else out

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.student.clear()
        self.teacher.clear()

    def features(self, batch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The (student, teacher) outputs of each pair, checked to come from a batch of `batch`."""
        out = []
        for i, (s, t) in enumerate(self.pairs):
            fs, ft = self.student.get(i), self.teacher.get(i)
            if fs is None or ft is None:
                raise EdgekdError(
                    f"no output captured from layers ('{s}', '{t}'): attach() the loss, then run both "
                    "the student and the teacher on the batch before computing it"
                )
            if len(fs) != batch or len(ft) != batch:
                raise EdgekdError(
                    f"layers ('{s}', '{t}') captured batches of {len(fs)} and {len(ft)} samples but the "
                    f"logits have {batch}: run both models on the same batch"
                )
            out.append((fs, ft))
        return out

    @torch.no_grad()
    def probe(self, student: nn.Module, teacher: nn.Module, in_channels: int, size: int) -> list[tuple]:
        """Output shapes of each pair for a dummy batch (2 x in_channels x size x size), in eval mode
        so batch-norm statistics are untouched; used to size adapters before the optimizer exists."""
        modes = student.training, teacher.training
        student.eval(), teacher.eval()
        try:
            x = torch.zeros(2, in_channels, size, size)
            student(x.to(model_device(student)))
            teacher(x.to(model_device(teacher)))
            return [(fs.shape, ft.shape) for fs, ft in self.features(2)]
        except RuntimeError as e:
            raise EdgekdError(
                f"dummy forward of a 2x{in_channels}x{size}x{size} batch failed ({str(e).splitlines()[0]}); "
                "set the loss's in_channels and input_size to those of the training images"
            ) from None
        finally:
            student.train(modes[0]), teacher.train(modes[1])
            self.student.clear(), self.teacher.clear()


class FeatureConfig(LossConfig):
    pairs: list[tuple[str, str]] = Field(min_length=1, description="(student layer, teacher layer) names")
    ce_weight: float = Field(1.0, ge=0, description="weight of CE on the labels")
    kd_weight: float = Field(0.0, ge=0, description="weight of Hinton KD on the logits (0: off)")
    temperature: float = Field(4.0, gt=0, description="T of the logit KD term")


class FeatureLoss(DistillLoss):
    """ce_weight * CE + kd_weight * KD_T + mean over pairs of `pair_term` (already weighted)."""

    uses_teacher_features = True
    Config = FeatureConfig

    def __init__(self, config: FeatureConfig):
        super().__init__(config)
        self.hooks = LayerHooks(config.pairs)

    def attach(self, student: nn.Module, teacher: nn.Module) -> None:
        self.hooks.attach(student, teacher)

    def detach(self) -> None:
        self.hooks.remove()

    def pair_term(self, i: int, fs: torch.Tensor, ft: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def feature_pairs(self, student: torch.Tensor, teacher: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return self.hooks.features(len(student))

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        c = self.config
        loss = c.ce_weight * F.cross_entropy(student, target)
        if c.kd_weight:
            loss = loss + c.kd_weight * soft_kl(student, teacher, c.temperature)
        pairs = self.feature_pairs(student, teacher)
        return loss + torch.stack([self.pair_term(i, fs, ft) for i, (fs, ft) in enumerate(pairs)]).mean()
