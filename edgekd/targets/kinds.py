"""What kind of machine a target is from here, decided once: this host, an ARM target with no
hardware here (verified under qemu), a board estimated by its latency model, a board reached
over ssh, a CUDA GPU, or another architecture edgekd can neither run nor emulate. `verify` and
`bench` each hold one entry per kind; nothing else looks at a target's architecture."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from enum import Enum

from edgekd.errors import EdgekdError
from edgekd.targets import TARGETS_DIR, Target, load_target, target_names
from edgekd.targets.remote import SshDevice, parse_device


class Kind(Enum):
    HOST = "this host"
    EMULATED_ARM = "aarch64 without hardware here: verified under qemu, estimated on every board"
    ESTIMATED_BOARD = "a board without hardware here: verified under qemu, latency from its model"
    SSH_DEVICE = "a board measured over ssh"
    CUDA = "a CUDA GPU"
    FOREIGN = "another architecture, neither run nor emulated here"


def kind_of(target: Target, device: SshDevice | None = None) -> Kind:
    if device is not None:
        return Kind.SSH_DEVICE
    if target.arch == platform.machine():
        return Kind.HOST
    if target.arch == "cuda":
        return Kind.CUDA
    if target.arch == "aarch64":
        return Kind.ESTIMATED_BOARD if target.latency_model() else Kind.EMULATED_ARM
    return Kind.FOREIGN


@dataclass(frozen=True)
class Placement:
    """A target as this build reaches it. `boards`: the boards whose latency is estimated from
    their models, the target itself (an estimated board) or every board of its architecture
    (emulated ARM); `verified_as`: the kind whose numerics verification checks (a board over
    ssh is verified as its architecture would be without it)."""

    target: Target
    kind: Kind
    device: SshDevice | None = None
    boards: tuple[Target, ...] = field(default=())

    @property
    def verified_as(self) -> Kind:
        return kind_of(self.target) if self.kind is Kind.SSH_DEVICE else self.kind

    @property
    def on_host(self) -> bool:
        """Its accuracy and agreement are this host's runtime's (a board over ssh of this host's
        architecture too: verification runs here)."""
        return self.verified_as is Kind.HOST

    @property
    def emulated(self) -> bool:
        """Verified on ARM's kernels under qemu."""
        return self.verified_as in (Kind.EMULATED_ARM, Kind.ESTIMATED_BOARD)


def profiles() -> list[Target]:
    """Every target profile."""
    return [load_target(name) for name in target_names()]


def place(target: Target, device: SshDevice | None = None, known: list[Target] | None = None) -> Placement:
    """`known`: the profiles, when read already (an emulated ARM target is estimated on each board among them)."""
    kind = kind_of(target, device)
    if kind is Kind.ESTIMATED_BOARD:
        boards = (target,)
    elif kind is Kind.EMULATED_ARM:
        known = profiles() if known is None else known
        boards = tuple(t for t in known if t.arch == target.arch and t.latency_model())
    else:
        boards = ()
    return Placement(target, kind, device, boards)


def host_placement(known: list[Target] | None = None) -> Placement:
    """The machine edgekd runs on, measured for every build as the reference table: the first
    profile of this machine's architecture, renamed."""
    native = [t for t in (profiles() if known is None else known) if kind_of(t) is Kind.HOST]
    if not native:
        raise EdgekdError(f"no target profile in {TARGETS_DIR} has arch = '{platform.machine()}'; add one")
    host = native[0].model_copy(update={"name": "host", "description": f"this machine ({platform.machine()})"})
    return Placement(host, Kind.HOST)


def placements(name_or_path: str, device_url: str | None = None) -> tuple[Placement, Placement]:
    """A build's --target (and --device) placed, and this host: every profile read once. Checks
    that need a connection or a tool (ssh, qemu) are the build specification's."""
    target = load_target(name_or_path)
    device = parse_device(device_url) if device_url else None
    known = profiles()
    return place(target, device, known), host_placement(known)
