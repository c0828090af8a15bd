"""What a model carries besides its weights (timm's way): where its stem, classifier and
feature layers are, and its pretrained weights with the preprocessing they were trained with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn


@dataclass(frozen=True)
class Preprocessing:
    """What pretrained weights were trained with: the student's input must match it."""

    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass(frozen=True)
class ModelCard:
    name: str
    build: Callable[[int, bool], nn.Module]  # (num_classes, small_input) -> randomly initialized model
    classifier: str  # the final Linear: re-initialized for the data's classes
    stem: str  # the first convolution (stride 1 with small_input)
    feature_layers: tuple[str, ...]  # stage ends before the last (self-distillation heads, feature losses)
    # the library's own pretrained weights (downloaded once into its cache), with their original classifier
    pretrained_state: Callable[[], dict[str, torch.Tensor]] | None = field(default=None, compare=False)
    preprocessing: Callable[[], Preprocessing] | None = field(default=None, compare=False)  # never downloads
