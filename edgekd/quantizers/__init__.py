"""Quantization-aware-training backends, by name. Adding one: a file with a `QatBackend`
registered in `QUANTIZERS`, named by the formats (`edgekd.formats.Format.quantizer`) it serves."""

from edgekd.quantizers import nncf, xnnpack  # noqa: F401  (registers the backends)
from edgekd.quantizers.base import QUANTIZERS, QatBackend

__all__ = ["QUANTIZERS", "QatBackend"]
