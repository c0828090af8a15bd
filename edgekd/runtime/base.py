"""What every runtime session offers. This sub-package needs only numpy and the runtime
itself, so it can be copied to a device and run there (`python -m edgekd.runtime`)."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
from contextlib import contextmanager
from typing import Callable

import numpy as np


class Session:
    runtime = ""
    # the architectures whose targets run it unless their profile lists its runtimes (GPU runtimes: none,
    # `targets/cuda.toml` names them)
    default_on: tuple[str, ...] = ("x86_64", "aarch64")
    package = ""  # its pip package: install hints, and the aarch64 wheel that runs it under emulation
    # that wheel's release when not the host's: the host's has no aarch64 Linux wheel that runs there
    arm_release: str | None = None
    emulated = True  # its aarch64 wheel runs ARM targets' artifacts under qemu
    # pip pins its aarch64 build needs in a folder of its own beside the emulated root file system
    # (ExecuTorch: the torch it links), fetched only when one of its artifacts runs there
    arm_site: tuple[str, ...] = ()
    # a GPU runtime: the format whose artifacts it runs, each with these session options (variants)
    gpu_runs: str | None = None
    gpu_variants: tuple[dict, ...] = ({},)
    not_installed = ""  # why a GPU runtime's version is None, for its rows

    @classmethod
    def variant_name(cls, options: dict) -> str:
        return cls.runtime

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits for a float32 NCHW batch."""
        raise NotImplementedError

    def input_shape(self) -> list[int]:
        """Input shape with the batch dimension set to 1."""
        raise NotImplementedError

    def metadata(self) -> dict[str, str]:
        """The key/values edgekd stored with the artifact, for the runtimes whose artifacts keep
        them in a container of their own (ExecuTorch, LiteRT, ncnn)."""
        raise NotImplementedError

    def executed_precision(self) -> dict:
        """Which precision the runtime really ran the convolutions in, read from its own graph."""
        return {}

    def pool_threads(self) -> int | None:
        """The threads the runtime really runs with, where it may take fewer than asked for."""
        return None


RUNTIMES: dict[str, tuple[Callable[[], str | None], Callable[..., Session]]] = {}


def register(name: str, version: Callable[[], str | None]):
    def add(opener: Callable[..., Session]):
        RUNTIMES[name] = (version, opener)
        return opener

    return add


def runtime_version(name: str) -> str | None:
    """Installed version of a runtime, or None when it is not installed."""
    load_plugins()
    return RUNTIMES[name][0]()


def open_session(runtime: str, path: str, threads: int, **options) -> Session:
    load_plugins()
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime '{runtime}'; known: {', '.join(sorted(RUNTIMES))}")
    return RUNTIMES[runtime][1](path, threads, **options)


PLUGINS_ENV = "EDGEKD_PLUGINS"
_plugins_loaded = False


def load_plugins() -> None:
    """Formats and runtimes from outside edgekd: the modules named in $EDGEKD_PLUGINS (comma-separated)
    and by the `edgekd.plugins` entry points of installed packages; importing one registers what it
    defines. Once per process, when `edgekd.formats` is imported or a runtime is first looked up (not
    at import: a plugin imports edgekd's modules itself), so a measuring subprocess knows them too."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    named = [n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(",") if n.strip()]
    named += [entry.value for entry in importlib.metadata.entry_points(group="edgekd.plugins")]
    for name in named:
        try:
            importlib.import_module(name)
        except ImportError as e:
            why = f"edgekd plugin {name} cannot be imported ({e}); fix ${PLUGINS_ENV} or uninstall its package"
            raise SystemExit(f"error: {why}") from None


def summarize_convs(kinds: list[str]) -> dict:
    """`kinds` holds 'int8' or 'fp32' per convolution the runtime executes."""
    int8 = kinds.count("int8")
    precision = "int8" if kinds and int8 == len(kinds) else "fp32" if int8 == 0 else "mixed"
    return {"precision": precision, "int8_convs": int8, "convs": len(kinds)}


@contextmanager
def native_output_silenced(*fds: int):
    """Native libraries (ExecuTorch, litert-torch, pnnx) print their logs and passes from C++
    on stdout or stderr, which carry edgekd's own output (--json, progress, errors): the given
    file descriptors go to /dev/null while they run."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in fds]
    try:
        with open(os.devnull, "w") as null:
            for fd in fds:
                os.dup2(null.fileno(), fd)
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in zip(fds, saved):
            os.dup2(copy, fd)
            os.close(copy)
