"""NNCF's quantization-aware training, for onnxruntime and OpenVINO (x86 and ARM CPUs).

Before the fake quantizers go in, BatchNorm is folded into the convolutions: a QDQ model whose
convolutions still feed BatchNorm keeps onnxruntime from fusing integer kernels (reference: 3x
slower than fp32). Activations are quantized per tensor, since onnxruntime's QLinearConv takes
one input scale. The target's int8 flavour picks signedness and whether weights use 7 bits
(reduce_range, for AVX2 without VNNI).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from edgekd.errors import EdgekdError
from edgekd.models import create_model
from edgekd.quantizers.base import QUANTIZERS, QatBackend
from edgekd.targets import Int8Flavour
from edgekd.training import compute
from edgekd.training.checkpoints import QatCheckpoint


class _BatchNormLeaves(torch.fx.Tracer):
    """Traces BatchNorm2d subclasses as one call: timm's BatchNormAct2d would otherwise be traced
    into its F.batch_norm call and never be found for folding."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, nn.BatchNorm2d) or super().is_leaf_module(m, qualname)


def _after_folding(bn: nn.BatchNorm2d) -> nn.Module:
    """What a folded BatchNorm leaves: nothing, or the dropout and activation that timm's
    BatchNormAct2d applies after normalizing."""
    rest = [getattr(bn, name, None) for name in ("drop", "act")]
    rest = [m for m in rest if isinstance(m, nn.Module) and not isinstance(m, nn.Identity)]
    return nn.Sequential(*rest) if rest else nn.Identity()


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Folds every BatchNorm2d that directly follows a Conv2d into it, in place.

    An FX trace finds the conv -> bn dataflow; the module tree itself is kept (NNCF wraps
    plain modules), with each folded BatchNorm replaced by what it applies after normalizing.
    """
    model.eval()
    graph = _BatchNormLeaves().trace(model)
    modules = dict(model.named_modules())
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], nn.BatchNorm2d):
            continue
        source = node.args[0]
        if source.op == "call_module" and isinstance(modules[source.target], nn.Conv2d) and len(source.users) == 1:
            model.set_submodule(source.target, fuse_conv_bn_eval(modules[source.target], modules[node.target]))
            model.set_submodule(node.target, _after_folding(modules[node.target]))
    return model


def _nncf_options(flavour: Int8Flavour) -> dict:
    import nncf
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        OverflowFix,
        QuantizationParameters,
    )

    advanced = AdvancedQuantizationParameters(
        activations_quantization_params=QuantizationParameters(per_channel=False),
        weights_quantization_params=QuantizationParameters(per_channel=flavour.per_channel),
        overflow_fix=OverflowFix.ENABLE if flavour.reduce_range else OverflowFix.DISABLE,
    )
    preset = nncf.QuantizationPreset.MIXED if flavour.activations == "u8" else nncf.QuantizationPreset.PERFORMANCE
    return {"preset": preset, "target_device": nncf.TargetDevice.CPU, "advanced_parameters": advanced}


def _quiet_nncf() -> None:
    logging.getLogger("nncf").setLevel(logging.WARNING)
    # NNCF's CPU kernels build through torch's extension loader, which warns about CUDA
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    # That build runs once per machine and NNCF gives up on it after 60 s, which a busy 2-core
    # machine exceeds; wait longer, but not forever (a stale lock file would hang the run).
    os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "900")


@contextmanager
def _squeeze_excitation_quantized():
    """NNCF leaves squeeze-excitation blocks in float: post-training quantization loses accuracy
    there. QAT trains through their quantizers, and a float SE block makes OpenVINO run those
    convolutions in fp32 while onnxruntime's integer layout quantizes them anyway, so the fake-
    quantized model would no longer be what both runtimes compute."""
    from nncf.common.graph.patterns.patterns import IgnoredPatternNames
    from nncf.torch.quantization.ignored_patterns import PT_IGNORED_PATTERNS

    patterns = PT_IGNORED_PATTERNS.registry_dict
    se_block = patterns.pop(IgnoredPatternNames.SE_BLOCK, None)
    try:
        yield
    finally:
        if se_block is not None:
            patterns[IgnoredPatternNames.SE_BLOCK] = se_block


def insert_fake_quant(
    model: nn.Module, flavour: Int8Flavour, calibration: list[torch.Tensor], keep_float: Sequence[str] = ()
) -> nn.Module:
    """`keep_float`: the modules (by name, `features.1.block.0.0`) whose convolutions stay in
    float, with no quantizer on their weights or inputs (NNCF's ignored scope)."""
    import nncf

    _quiet_nncf()
    options = _nncf_options(flavour)
    if keep_float:  # NNCF names a module's convolution by its path and call: features/1/block/0/0/conv2d/0
        names = [f"{name.replace('.', '/')}/conv2d/0" for name in keep_float]
        options["ignored_scope"] = nncf.IgnoredScope(names=names)
    # NNCF's progress bars print to stdout, which carries results (`--json`): send them to stderr
    with _squeeze_excitation_quantized(), contextlib.redirect_stdout(sys.stderr):
        return nncf.quantize(fold_batchnorm(model), nncf.Dataset(calibration), subset_size=len(calibration), **options)


def _check_cuda_kernels() -> None:
    """On a GPU, NNCF compiles its fake-quantization kernels with nvcc on first use: fail
    before training when it cannot."""
    import nncf
    import nncf.torch

    try:
        nncf.torch.force_build_cuda_extensions()
    except nncf.InstallationError:
        raise EdgekdError(
            "NNCF cannot compile its CUDA quantization kernels: put the CUDA toolkit's nvcc on PATH, "
            'or run quantization on the CPU (device = "cpu" in [compute])'
        ) from None


def load_quantized(path: Path) -> tuple[nn.Module, QatCheckpoint]:
    """Rebuilds the fake-quantized student saved by `quantize`."""
    import nncf.torch

    _quiet_nncf()
    ckpt = QatCheckpoint.load(path)
    model = fold_batchnorm(create_model(ckpt.arch, ckpt.num_classes, ckpt.small_input))
    model = nncf.torch.load_from_config(model, ckpt.nncf_config)
    model.load_state_dict(ckpt.state_dict)
    return qdq_export_mode(model).eval(), ckpt


def qdq_export_mode(model: nn.Module) -> nn.Module:
    """ONNX export then writes standard QuantizeLinear/DequantizeLinear pairs rather than
    OpenVINO's FakeQuantize; OpenVINO reads the pairs back as int8."""
    from nncf.torch.quantization.layers import QuantizerExportMode

    for module in model.modules():
        if hasattr(module, "set_export_mode"):
            module.set_export_mode(QuantizerExportMode.ONNX_QUANTIZE_DEQUANTIZE_PAIRS)
    return model


class NncfBackend(QatBackend):
    name, title = "nncf", "NNCF"  # NNCF is in the base install

    def prepare(self, model: nn.Module, flavour: Int8Flavour, calibration: list[torch.Tensor]) -> nn.Module:
        if compute.device().type == "cuda":
            _check_cuda_kernels()
        return insert_fake_quant(model, flavour, calibration)

    def checkpoint_fields(self, model: nn.Module, calibration: list[torch.Tensor]) -> dict:
        import nncf.torch

        return {"state_dict": model.state_dict(), "nncf_config": nncf.torch.get_config(model)}

    def load(self, path: Path) -> tuple[nn.Module, QatCheckpoint]:
        return load_quantized(path)


QUANTIZERS.register(NncfBackend.name)(NncfBackend())
