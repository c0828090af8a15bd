"""One registry of image classifiers, students and teachers alike: `create_model(name)`.

`small_input=True` adapts an ImageNet architecture to small images (CIFAR, 32x32 and below):
the first stride-2 convolution becomes stride 1 and the stem max-pool is removed, the
recipe behind the reference CIFAR figures.
"""

from __future__ import annotations

from typing import Callable

from torch import nn
from torchvision import models as tvm

from edgekd.registry import Registry

MODELS: Registry[Callable[[int, bool], nn.Module]] = Registry("model")


def create_model(name: str, num_classes: int, small_input: bool = False) -> nn.Module:
    return MODELS.get(name)(num_classes, small_input)


def _stride1(conv: nn.Conv2d) -> None:
    conv.stride = (1, 1)


@MODELS.register("mobilenet_v2")
def mobilenet_v2(num_classes: int, small_input: bool) -> nn.Module:
    model = tvm.mobilenet_v2(num_classes=num_classes)
    if small_input:
        _stride1(model.features[0][0])
    return model


def _mobilenet_v3(builder: Callable[..., nn.Module]) -> Callable[[int, bool], nn.Module]:
    def create(num_classes: int, small_input: bool) -> nn.Module:
        model = builder(num_classes=num_classes)
        if small_input:
            _stride1(model.features[0][0])
        return model

    return create


MODELS.register("mobilenet_v3_small")(_mobilenet_v3(tvm.mobilenet_v3_small))
MODELS.register("mobilenet_v3_large")(_mobilenet_v3(tvm.mobilenet_v3_large))


def _shufflenet(builder: Callable[..., nn.Module]) -> Callable[[int, bool], nn.Module]:
    def create(num_classes: int, small_input: bool) -> nn.Module:
        model = builder(num_classes=num_classes)
        if small_input:
            _stride1(model.conv1[0])
            model.maxpool = nn.Identity()
        return model

    return create


MODELS.register("shufflenet_v2_x0_5")(_shufflenet(tvm.shufflenet_v2_x0_5))
MODELS.register("shufflenet_v2_x1_0")(_shufflenet(tvm.shufflenet_v2_x1_0))


def _resnet(builder: Callable[..., nn.Module]) -> Callable[[int, bool], nn.Module]:
    def create(num_classes: int, small_input: bool) -> nn.Module:
        model = builder(num_classes=num_classes)
        if small_input:  # the CIFAR stem of the shared teacher
            model.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
            model.maxpool = nn.Identity()
        return model

    return create


MODELS.register("resnet18")(_resnet(tvm.resnet18))
MODELS.register("resnet34")(_resnet(tvm.resnet34))
MODELS.register("resnet50")(_resnet(tvm.resnet50))
