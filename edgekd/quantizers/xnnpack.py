"""PT2E quantization-aware training with ExecuTorch's XNNPACK quantizer, for the formats that
run on XNNPACK (ExecuTorch's CPU delegate on ARM and x86): symmetric int8 weights (per
channel), asymmetric int8 activations, the scheme XNNPACK's and KleidiAI's kernels compute.

The student is captured with torch.export and torchao's `prepare_qat_pt2e` puts fake quantizers
in the captured graph; BatchNorm stays in training and is folded into the convolutions when the
trained graph is converted. The checkpoint keeps that converted graph as a torch.export program,
from which the ExecuTorch and LiteRT artifacts are both exported.
"""

from __future__ import annotations

import copy
import io
from pathlib import Path

import torch
from torch import nn

from edgekd.quantizers.base import QUANTIZERS, QatBackend
from edgekd.targets import Int8Flavour
from edgekd.training.checkpoints import QatCheckpoint

MAX_BATCH = 4096


def export_with_any_batch(model: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    return torch.export.export(model, (example,), dynamic_shapes=({0: batch},))


def capture(model: nn.Module, example: torch.Tensor) -> nn.Module:
    return export_with_any_batch(model, example).module()


def train_eval_switchable(graph: nn.Module) -> nn.Module:
    """An exported graph ignores .train()/.eval(); torchao makes them switch its BatchNorm and
    dropout ops, which the training loop relies on."""
    from torchao.quantization.pt2e import allow_exported_model_train_eval

    return allow_exported_model_train_eval(graph)


def with_int8_weights(graph: nn.Module) -> nn.Module:
    """A copy of the converted graph with each weight's quantize op folded into an int8 constant, as
    XNNPACK's partitioner takes it (what `convert_pt2e` does by default)."""
    from torchao.quantization.pt2e.constant_fold import constant_fold
    from torchao.quantization.pt2e.quantize_pt2e import _quant_node_constraint

    folded = copy.deepcopy(graph)  # the same graph goes on to LiteRT's converter, which wants it unfolded
    constant_fold(folded, _quant_node_constraint)
    return folded


class XnnpackBackend(QatBackend):
    name, title, module, extra = "xnnpack", "PT2E with the XNNPACK quantizer", "executorch", "executorch"

    def scheme(self, flavour: Int8Flavour) -> Int8Flavour:
        """The scheme XNNPACK computes, whatever the target's ONNX flavour: s8 activations, full 8-bit weights."""
        return Int8Flavour(activations="s8", weights="s8", per_channel=flavour.per_channel, reduce_range=False)

    def prepare(self, model: nn.Module, flavour: Int8Flavour, calibration: list[torch.Tensor]) -> nn.Module:
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )
        from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

        config = get_symmetric_quantization_config(is_per_channel=flavour.per_channel, is_qat=True)
        example = torch.cat(calibration)[:2]  # batch 2: a batch of 1 would be specialized
        prepared = train_eval_switchable(
            prepare_qat_pt2e(capture(model.train(), example), XNNPACKQuantizer().set_global(config))
        )
        prepared.eval()  # observers see the calibration images through BatchNorm's running statistics
        with torch.no_grad():
            for batch in calibration:
                prepared(batch)
        return prepared

    def checkpoint_fields(self, model: nn.Module, calibration: list[torch.Tensor]) -> dict:
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

        model.eval()  # the switch torchao adds returns None
        # weights stay float, each behind its quantize/dequantize pair: LiteRT's converter reads
        # them so; ExecuTorch's export folds them to int8 (`with_int8_weights`)
        converted = convert_pt2e(model, fold_quantize=False)
        program = export_with_any_batch(converted, torch.cat(calibration)[:2])
        buffer = io.BytesIO()
        torch.export.save(program, buffer)
        return {"state_dict": {}, "program": buffer.getvalue()}

    def load(self, path: Path) -> tuple[nn.Module, QatCheckpoint]:
        import torchao.quantization.pt2e  # noqa: F401  (registers the quantized ops the program calls)

        ckpt = QatCheckpoint.load(path)
        model = train_eval_switchable(torch.export.load(io.BytesIO(ckpt.program)).module())
        model.eval()
        return model, ckpt


QUANTIZERS.register(XnnpackBackend.name)(XnnpackBackend())
