"""One registry of image classifiers, students and teachers alike: `create_model(name)`.

Each model carries its metadata in a `ModelCard` (timm's way): the stem convolution, the
classifier, the feature layers (stage ends) and, when it has them, its default pretrained
weights and the preprocessing they were trained with. torchvision's mobile models and ResNets
are registered here; any timm model is `timm:NAME` (`edgekd.models.timm_models`, extra `edgekd[timm]`).

`small_input=True` adapts an ImageNet architecture to small images (CIFAR, 32x32 and below):
the first stride-2 convolution becomes stride 1 and the stem max-pool is removed, the
recipe behind the reference CIFAR figures. Weight shapes stay, so pretrained weights still
load (ResNet's 7x7 stem becomes 3x3, and only it starts fresh).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from torch import nn
from torchvision import models as tvm

from edgekd.models.card import ModelCard
from edgekd.models.weights import default_state, fit_weights, read_state_dict, torchvision_pretrained
from edgekd.registry import Registry

TIMM_PREFIX = "timm:"


MODELS: Registry[ModelCard] = Registry("model")


def model_card(name: str) -> ModelCard:
    if name.startswith(TIMM_PREFIX):
        from edgekd.models.timm_models import timm_card

        return timm_card(name[len(TIMM_PREFIX) :])
    return MODELS.get(name)


def create_model(name: str, num_classes: int, small_input: bool = False, weights: str = "none") -> nn.Module:
    """`weights`: "none" (random), "default" (the library's pretrained weights, downloaded once
    into its cache) or a state_dict / safetensors file; the classifier is new either way."""
    card = model_card(name)
    if weights == "none":
        return card.build(num_classes, small_input)
    model = card.build(num_classes, small_input)
    if weights == "default":
        fit_weights(model, default_state(card), card, f"the default pretrained weights of {name}")
    else:
        fit_weights(model, read_state_dict(Path(weights)), card, f"student weights {weights}")
    return model


def _stride1(conv: nn.Conv2d) -> None:
    conv.stride = (1, 1)


def _register(name: str, build: Callable[[int, bool], nn.Module], classifier: str, stem: str, layers: list[str]):
    state, preprocessing = torchvision_pretrained(name)
    MODELS.register(name)(ModelCard(name, build, classifier, stem, tuple(layers), state, preprocessing))


def _mobilenet(builder: Callable[..., nn.Module]) -> Callable[[int, bool], nn.Module]:
    def create(num_classes: int, small_input: bool) -> nn.Module:
        model = builder(num_classes=num_classes)
        if small_input:
            _stride1(model.features[0][0])
        return model

    return create


def _shufflenet(builder: Callable[..., nn.Module]) -> Callable[[int, bool], nn.Module]:
    def create(num_classes: int, small_input: bool) -> nn.Module:
        model = builder(num_classes=num_classes)
        if small_input:
            _stride1(model.conv1[0])
            model.maxpool = nn.Identity()
        return model

    return create


def _resnet(builder: Callable[..., nn.Module]) -> Callable[[int, bool], nn.Module]:
    def create(num_classes: int, small_input: bool) -> nn.Module:
        model = builder(num_classes=num_classes)
        if small_input:  # the CIFAR stem of the shared teacher
            model.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
            model.maxpool = nn.Identity()
        return model

    return create


# the feature layers are the ends of the stages before the last (1/4, 1/8, 1/16 of the input),
# where BYOT puts its heads after ResNet's layer1-3
_register("mobilenet_v2", _mobilenet(tvm.mobilenet_v2), "classifier.1", "features.0.0",
          ["features.3", "features.6", "features.13"])  # fmt: skip
_register("mobilenet_v3_small", _mobilenet(tvm.mobilenet_v3_small), "classifier.3", "features.0.0",
          ["features.1", "features.3", "features.8"])  # fmt: skip
_register("mobilenet_v3_large", _mobilenet(tvm.mobilenet_v3_large), "classifier.3", "features.0.0",
          ["features.3", "features.6", "features.12"])  # fmt: skip
for _name in ("shufflenet_v2_x0_5", "shufflenet_v2_x1_0"):
    _register(_name, _shufflenet(getattr(tvm, _name)), "fc", "conv1.0", ["stage2", "stage3"])
for _name in ("resnet18", "resnet34", "resnet50"):
    _register(_name, _resnet(getattr(tvm, _name)), "fc", "conv1", ["layer1", "layer2", "layer3"])


def check_model_name(name: str) -> None:
    """Raises EdgekdError for a name no registry has (a timm name needs timm installed)."""
    model_card(name)
    if name.startswith(TIMM_PREFIX):
        from edgekd.models.timm_models import check_supported

        check_supported(name[len(TIMM_PREFIX) :])
