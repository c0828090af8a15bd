"""A build's specification: the config, the target and the device, read and checked once, before
any training, and not changed afterwards; every stage of `edgekd.pipeline` reads it."""

from __future__ import annotations

from dataclasses import dataclass

from edgekd.config import PipelineConfig, checked_config
from edgekd.runtime import session_class
from edgekd.stages.bench import check_arm_profiles
from edgekd.stages.export import ExportConfig
from edgekd.stages.verify import check_emulation
from edgekd.targets import Target
from edgekd.targets.kinds import Kind, Placement, placements


@dataclass(frozen=True)
class BuildSpec:
    config: PipelineConfig  # a checked copy (`checked_config`): later changes to the caller's do not reach it
    placement: Placement  # the build's --target, as reached from here
    host: Placement  # this machine: every build's reference table

    @property
    def target(self) -> Target:
        return self.placement.target

    @property
    def tables(self) -> tuple[Placement, ...]:
        """The host's table, and the target's unless the target is this host (measured over ssh, it is not)."""
        return (self.host,) if self.placement.kind is Kind.HOST else (self.host, self.placement)

    @property
    def export(self) -> ExportConfig:
        """The config's formats, and those the target's GPU runtimes run (torch-cuda: the PyTorch program)."""
        formats = self.config.export.formats
        gpu_formats = [session_class(name).gpu_runs for name in self.target.runtimes]
        missing = [fmt for fmt in dict.fromkeys(gpu_formats) if fmt and fmt not in formats]
        if missing:
            return self.config.export.model_copy(update={"formats": [*formats, *missing]})
        return self.config.export


def make_spec(cfg: PipelineConfig, placed: tuple[Placement, Placement], training_only: bool = False) -> BuildSpec:
    """`placed`: the target and this host (`edgekd.targets.kinds.placements`). What cannot work
    stops here, before training: a bad config, qemu or profiles required but missing, an
    unreachable device (`training_only`: the config alone; nothing will be verified or measured)."""
    placement, host = placed
    cfg = checked_config(cfg)
    if training_only:
        return BuildSpec(cfg, placement, host)
    if placement.kind is Kind.SSH_DEVICE:
        placement.device.check()
    else:
        check_emulation(cfg.verify, placement)
        check_arm_profiles(cfg.bench, placement)
    return BuildSpec(cfg, placement, host)


def build_spec(cfg: PipelineConfig, target: str, device: str | None = None) -> BuildSpec:
    """The specification of `edgekd build --target TARGET [--device DEVICE]` with this config."""
    return make_spec(cfg, placements(target, device))
