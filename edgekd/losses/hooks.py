"""Shared plumbing of the feature-based losses (FitNets, AT, SP, RKD on layers, self-distillation).

`OutputHooks` keeps the latest output of named layers of one model, captured by forward hooks
while the training step runs it; `LayerHooks` does so for (student layer, teacher layer) pairs.
`FeatureLoss` is the base class of the pair methods: it hooks the layers in `attach`, adds the
optional logit terms (CE + Hinton KD) and averages the method's per-pair term over the pairs.
"""

from __future__ import annotations

import difflib

import torch
from pydantic import Field
from torch import nn

from edgekd.errors import EdgekdError
from edgekd.losses.base import DistillLoss, LossConfig, soft_kl
from edgekd.registry import did_you_mean
from edgekd.training.compute import model_device


def find_layer(model: nn.Module, name: str, role: str) -> nn.Module:
    if getattr(model, "opaque", None):  # an ONNX or torch.export teacher (edgekd.training.teachers)
        raise EdgekdError(
            f"the {role} is {model.opaque}, which has no layers to hook for '{name}'; give a state_dict "
            "teacher (.pt) or choose a logit-based loss (kd, dkd, ...)"
        )
    layers = dict(model.named_modules())
    if name not in layers:
        valid = [n for n in layers if n]  # "" is the model itself
        some = difflib.get_close_matches(name, valid, n=6, cutoff=0.4) or valid[:6]
        raise EdgekdError(
            f"the {role} has no layer '{name}'{did_you_mean(name, valid)}; "
            f"valid names include: {', '.join(some) or '(none)'}"
        )
    return layers[name]


class OutputHooks:
    """Forward hooks keeping, per index, the latest output of named layers of one model: with its
    graph (a model being trained) or detached (a frozen teacher)."""

    def __init__(self, names: list[str], role: str, detach: bool):
        self.names, self.role, self.detach = list(names), role, detach
        self.outputs: dict[int, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def layers(self, model: nn.Module) -> list[nn.Module]:
        return [find_layer(model, name, self.role) for name in self.names]

    def attach(self, layers: list[nn.Module]) -> None:
        """Hooks `layers` (from `layers(model)`: resolve every name before hooking anything)."""
        self.remove()
        for i, layer in enumerate(layers):
            self._handles.append(layer.register_forward_hook(self._keep(i)))

    def _keep(self, i: int):
        def hook(module: nn.Module, inputs: tuple, output) -> None:
            out = output[0] if isinstance(output, (tuple, list)) else output
            self.outputs[i] = out.detach() if self.detach else out

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.outputs.clear()

    def captured(self, batch: int, what: str) -> list[torch.Tensor]:
        """Each layer's output, checked to come from a batch of `batch` samples; `what` names the
        models to run, for the error."""
        out = []
        for i, name in enumerate(self.names):
            f = self.outputs.get(i)
            if f is None:
                raise EdgekdError(
                    f"no output captured from {self.role} layer '{name}': attach() the loss, then run "
                    f"{what} on the batch before computing it"
                )
            if len(f) != batch:
                raise EdgekdError(
                    f"{self.role} layer '{name}' captured a batch of {len(f)} samples but the logits have "
                    f"{batch}: run {what} on the same batch"
                )
            out.append(f)
        return out


class LayerHooks:
    """Forward hooks storing, per pair index, the student layer's output (with its graph) and the
    teacher layer's output (detached: the teacher is never trained)."""

    def __init__(self, pairs: list[tuple[str, str]]):
        self.pairs = list(pairs)
        self.student = OutputHooks([s for s, _ in self.pairs], "student", detach=False)
        self.teacher = OutputHooks([t for _, t in self.pairs], "teacher", detach=True)

    def attach(self, student: nn.Module, teacher: nn.Module) -> None:
        # resolve every name first, so a typo leaves no half-hooked models behind
        layers = self.student.layers(student), self.teacher.layers(teacher)
        self.student.attach(layers[0])
        self.teacher.attach(layers[1])

    def remove(self) -> None:
        self.student.remove()
        self.teacher.remove()

    def features(self, batch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The (student, teacher) outputs of each pair, checked to come from a batch of `batch`."""
        what = "both the student and the teacher"
        return list(zip(self.student.captured(batch, what), self.teacher.captured(batch, what)))

    def probe(self, student: nn.Module, teacher: nn.Module, in_channels: int, size: int) -> list[tuple]:
        """Output shapes of each pair for a dummy batch; used to size adapters before the optimizer exists."""
        fix = "set the loss's in_channels and input_size to those of the training images"
        try:
            dummy_forward([student, teacher], in_channels, size, fix)
            return [(fs.shape, ft.shape) for fs, ft in self.features(2)]
        finally:
            self.student.outputs.clear(), self.teacher.outputs.clear()


@torch.no_grad()
def dummy_forward(models: list[nn.Module], in_channels: int, size: int, fix: str) -> None:
    """Runs each model once on a zero batch (2 x in_channels x size x size), for its hooks to see
    the layers' shapes; in eval mode, so batch-norm statistics are untouched. `fix` ends the error."""
    modes = [m.training for m in models]
    try:
        for model in models:
            model.eval()
            model(torch.zeros(2, in_channels, size, size, device=model_device(model)))
    except RuntimeError as e:
        raise EdgekdError(
            f"dummy forward of a 2x{in_channels}x{size}x{size} batch failed ({str(e).splitlines()[0]}); {fix}"
        ) from None
    finally:
        for model, mode in zip(models, modes):
            model.train(mode)


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
        loss = c.ce_weight * self.ce(student, target)
        if c.kd_weight:
            loss = loss + c.kd_weight * soft_kl(student, teacher, c.temperature)
        pairs = self.feature_pairs(student, teacher)
        return loss + torch.stack([self.pair_term(i, fs, ft) for i, (fs, ft) in enumerate(pairs)]).mean()
