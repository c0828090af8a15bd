"""Device profiles (`targets/*.toml`): where artifacts run, with which runtimes and int8 flavour."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edgekd.errors import EdgekdError
from edgekd.registry import did_you_mean
from edgekd.runtime import default_runtimes
from edgekd.targets.armtiming import InstructionModel
from edgekd.targets.costmodel import CostModel
from edgekd.validation import explain

TARGETS_DIR = Path(os.environ.get("EDGEKD_TARGETS", Path(__file__).resolve().parents[2] / "targets"))


class Int8Flavour(BaseModel):
    model_config = ConfigDict(extra="forbid")

    activations: Literal["u8", "s8"] = "u8"
    weights: Literal["s8"] = "s8"
    per_channel: bool = True
    reduce_range: bool = Field(False, description="7-bit weights, for AVX2 machines without VNNI")


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    arch: Literal["x86_64", "aarch64", "cuda"]
    runtimes: list[str] = Field(description="omitted: every runtime registered for the arch (`default_runtimes`)")
    threads: int = Field(2, ge=1)
    int8: Int8Flavour = Int8Flavour()
    # a board without hardware here: latency estimated from the ARM instructions each artifact
    # executes (instruction_model), or where they cannot be profiled from FLOPs (cost_model)
    instruction_model: InstructionModel | None = None
    cost_model: CostModel | None = None

    @model_validator(mode="before")
    @classmethod
    def _registered_runtimes(cls, fields):
        # a new runtime (one module, or a plugin) runs on every CPU target that does not list its own
        if isinstance(fields, dict) and "runtimes" not in fields and isinstance(fields.get("arch"), str):
            return {**fields, "runtimes": default_runtimes(fields["arch"])}
        return fields

    def latency_model(self) -> InstructionModel | CostModel | None:
        """What a board without hardware here is estimated by: its instruction model, else its FLOP model."""
        return self.instruction_model or self.cost_model


def target_names() -> list[str]:
    return sorted(p.stem for p in TARGETS_DIR.glob("*.toml"))


def load_target(name_or_path: str) -> Target:
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = TARGETS_DIR / f"{name_or_path}.toml"
        if not path.is_file():
            names = target_names()
            raise EdgekdError(
                f"unknown target '{name_or_path}'{did_you_mean(name_or_path, names)}; "
                f"choose one of: {', '.join(names)} (or pass a .toml file)"
            )
    elif not path.is_file():
        raise EdgekdError(f"target file {path} does not exist")
    try:
        return Target(**tomllib.loads(path.read_text()))
    except tomllib.TOMLDecodeError as e:
        raise EdgekdError(f"target file {path} is not valid TOML: {e}") from None
    except ValidationError as e:
        raise explain(e, f"target file {path}", Target) from None
