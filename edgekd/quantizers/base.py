"""What a quantization-aware-training backend does: insert fake quantizers in the scheme its
formats' int8 kernels compute, and save / load the trained result. The quantize stage trains
in between, with the distillation loss on, whatever the backend."""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

from edgekd.errors import EdgekdError
from edgekd.registry import Registry
from edgekd.targets import Int8Flavour
from edgekd.training.checkpoints import QatCheckpoint


class QatBackend:
    name = ""
    title = ""  # as the report names the QAT an artifact comes from
    module = ""  # the Python package it needs beyond the base install ("": none)
    extra = ""  # the pip extra that installs it

    def check_installed(self) -> None:
        if not self.module:
            return
        try:
            importlib.import_module(self.module)
        except ImportError:
            raise EdgekdError(
                f"QAT with {self.title} needs {self.module}: pip install 'edgekd[{self.extra}]'"
            ) from None

    def scheme(self, flavour: Int8Flavour) -> Int8Flavour:
        """The int8 scheme this backend trains for the target's `flavour`."""
        return flavour

    def prepare(self, model: nn.Module, flavour: Int8Flavour, calibration: list[torch.Tensor]) -> nn.Module:
        """The fp32 student with fake quantizers, calibrated, ready to train."""
        raise NotImplementedError

    def checkpoint_fields(self, model: nn.Module, calibration: list[torch.Tensor]) -> dict:
        """What the QAT checkpoint keeps beyond the common fields, to rebuild the trained model."""
        raise NotImplementedError

    def load(self, path: Path) -> tuple[nn.Module, QatCheckpoint]:
        """The trained model as the export reads it, in eval mode, with its checkpoint."""
        raise NotImplementedError


QUANTIZERS: Registry[QatBackend] = Registry("quantizer")
