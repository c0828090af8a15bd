"""Runtimes that run exported artifacts. Adding one: a file with a `Session` under `register`, imported
here (or a plugin module, `load_plugins`)."""

import importlib

from edgekd.runtime.base import RUNTIMES, Session, load_plugins, open_session, runtime_version

# registered in this order, which targets without a runtimes list show theirs in
for _module in ("ort", "ov", "executorch", "litert", "ncnn", "ort_gpu", "torch_cuda"):
    importlib.import_module(f"edgekd.runtime.{_module}")


def session_class(name: str) -> type[Session]:
    """The registered session of runtime `name`: its class attributes say what it is (package, ...)."""
    return RUNTIMES[name][1]


def default_runtimes(arch: str) -> list[str]:
    """What a target of `arch` runs when its profile lists no runtimes."""
    load_plugins()
    return [name for name in RUNTIMES if arch in session_class(name).default_on]


__all__ = ["RUNTIMES", "Session", "default_runtimes", "open_session", "runtime_version", "session_class"]
