"""edgekd: distill a teacher into a mobile student, quantize it, export it, and report how it runs.

from edgekd import load_config, build
report = build(load_config(), target_name="arm", out="edgekd-out")
"""

__version__ = "0.1.0"

# Imported lazily: `edgekd.runtime` runs on devices that have no torch.
_API = {
    "build": "edgekd.pipeline",
    "load_config": "edgekd.config",
    "PipelineConfig": "edgekd.config",
    "create_model": "edgekd.models",
    "create_loss": "edgekd.losses",
    "load_target": "edgekd.targets",
    "EdgekdError": "edgekd.errors",
}


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'edgekd' has no attribute {name!r}")


__all__ = list(_API) + ["__version__"]
