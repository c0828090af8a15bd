"""The students the training stages hand on: `student_fp32.pt` (distill) and
`student_int8_qat.pt` (quantize), typed. On disk each is the plain dict torch.save writes,
with the same keys as before, so finished stages of earlier runs are still reused."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from pydantic import BaseModel

from edgekd.targets import Int8Flavour
from edgekd.training import distributed
from edgekd.training.loop import load_checkpoint


@dataclass(kw_only=True)
class StudentCheckpoint:
    """A distilled student: its weights and all that rebuilds it and preprocesses for it."""

    arch: str  # an edgekd.models name
    num_classes: int
    small_input: bool
    preprocessing: dict  # `Data.preprocessing()`: what the artifacts' metadata carries
    state_dict: dict[str, torch.Tensor]
    val_accuracy: float

    def save(self, path: Path) -> Path:
        # typed settings (the int8 scheme) go to disk as plain dicts: checkpoints stay readable without edgekd
        state = {f.name: getattr(self, f.name) for f in fields(self)}
        state = {k: v.model_dump() if isinstance(v, BaseModel) else v for k, v in state.items()}
        distributed.save(state, path)  # under torchrun, rank 0 writes
        return path

    @classmethod
    def load(cls, path: Path):
        state = load_checkpoint(path)
        return cls(**{f.name: state[f.name] for f in fields(cls) if f.name in state})  # absent: its default


@dataclass(kw_only=True)
class QatCheckpoint(StudentCheckpoint):
    """The student after quantization-aware training, with its fake quantizers."""

    int8: Int8Flavour  # the scheme it was trained for
    # a few normalized training images (fp16): the ONNX export re-lays its Q/DQ out for
    # onnxruntime, and tensors NNCF left in float get their ranges from them
    calibration: torch.Tensor
    quantizer: str = "nncf"  # the `edgekd.quantizers` backend that trained it
    nncf_config: dict = field(default_factory=dict)  # nncf: NNCF's record of where the quantizers sit
    program: bytes = b""  # xnnpack: the converted graph, a saved torch.export program (weights inside)

    def __post_init__(self) -> None:
        if isinstance(self.int8, dict):  # as `save` wrote it
            self.int8 = Int8Flavour(**self.int8)

    def calibration_array(self):
        return self.calibration.float().numpy()
