"""Distillation losses. Adding one: a file here with a `DistillLoss` subclass under `@LOSSES.register`."""

# importing the modules registers the methods
from edgekd.losses import (  # noqa: F401
    at,
    ctkd,
    dist,
    dkd,
    dml,
    dynamic,
    fitnet,
    kd,
    multi_teacher,
    rkd,
    self_distill,
    sp,
)
from edgekd.losses.base import LOSSES, DistillLoss, LossConfig, StudentSpec, create_loss, kl_to_probs, soft_kl

__all__ = ["LOSSES", "DistillLoss", "LossConfig", "StudentSpec", "create_loss", "kl_to_probs", "soft_kl"]
