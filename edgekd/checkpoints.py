"""The students the training stages hand on: `student_fp32.pt` (distill) and
`student_int8_qat.pt` (quantize), typed. On disk each is the plain dict torch.save writes,
with the same keys as before, so finished stages of earlier runs are still reused."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import torch

from edgekd import distributed
from edgekd.targets import Int8Flavour
from edgekd.train import load_checkpoint


@dataclass(kw_only=True)
class StudentCheckpoint:
    """A distilled student: its weights and all that rebuilds it and preprocesses for it."""

    arch: str  # an edgekd.models name
    num_classes: int
    small_input: bool
    preprocessing: dict  # `Data.preprocessing()`: what the artifacts' metadata carries
    state_dict: dict[str, torch.Tensor]
    val_accuracy: float

    def to_file(self) -> dict:
        state = {f.name: getattr(self, f.name) for f in fields(self)}
        return state | ({"int8": state["int8"].model_dump()} if isinstance(state.get("int8"), Int8Flavour) else {})

    def save(self, path: Path) -> Path:
        distributed.save(self.to_file(), path)  # under torchrun, rank 0 writes
        return path

    @classmethod
    def load(cls, path: Path):
        state = load_checkpoint(path)
        known = {f.name for f in fields(cls)}
        if "int8" in state:
            state = state | {"int8": Int8Flavour(**state["int8"])}
        return cls(**{k: v for k, v in state.items() if k in known})


@dataclass(kw_only=True)
class QatCheckpoint(StudentCheckpoint):
    """The student after quantization-aware training, with its fake quantizers."""

    nncf_config: dict  # NNCF's record of where the quantizers sit
    int8: Int8Flavour  # the scheme it was trained for
    # a few normalized training images (fp16): the ONNX export re-lays its Q/DQ out for
    # onnxruntime, and tensors NNCF left in float get their ranges from them
    calibration: torch.Tensor

    def calibration_array(self):
        return self.calibration.float().numpy()
