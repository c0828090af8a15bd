"""Distillation losses. Adding one: a file here with a `DistillLoss` subclass under `@LOSSES.register`."""

from edgekd.losses import at, dkd, dynamic, fitnet, kd, multi_teacher, rkd, sp  # noqa: F401  (registers the methods)
from edgekd.losses.base import LOSSES, DistillLoss, LossConfig, create_loss, kl_to_probs, soft_kl

__all__ = ["LOSSES", "DistillLoss", "LossConfig", "create_loss", "kl_to_probs", "soft_kl"]
