"""What every runtime session offers. This sub-package needs only numpy and the runtime
itself, so it can be copied to a device and run there (`python -m edgekd.runtime`)."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Callable

import numpy as np


class Session:
    runtime = ""

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
    return RUNTIMES[name][0]()


def open_session(runtime: str, path: str, threads: int, **options) -> Session:
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime '{runtime}'; known: {', '.join(sorted(RUNTIMES))}")
    return RUNTIMES[runtime][1](path, threads, **options)


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
