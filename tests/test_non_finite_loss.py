"""A loss that stops being finite stops its stage at once, with one line naming the stage, the
epoch and the likely cause; the last finished epoch's checkpoint stays for --resume."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from edgekd.errors import EdgekdError
from edgekd.training.loop import TrainConfig, fit, load_checkpoint
from tests.bad_inputs import bad_input
from tests.helpers import (
    FP32_ONNX,
    MeanColourTeacher,
    assert_one_line_error,
    export_teacher,
    said,
    tiny_net,
    write_config,
)


class DivergingLoss:
    """Cross-entropy that turns NaN from epoch `diverges_at` (0-based) on, as a diverging run's does."""

    def __init__(self, diverges_at: int):
        self.diverges_at, self.epoch = diverges_at, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __call__(self, model, batch):
        loss = F.cross_entropy(model(batch[0]), batch[1])
        return loss * float("nan") if self.epoch >= self.diverges_at else loss


def test_nan_in_epoch_2_keeps_epoch_1_and_resume_goes_on_from_it(tmp_path):
    loader = DataLoader(TensorDataset(torch.randn(8, 3, 16, 16), torch.arange(8) % 3), batch_size=4)
    cfg, checkpoint = TrainConfig(epochs=3, lr=0.01), tmp_path / "stage.ckpt"
    loss = DivergingLoss(diverges_at=1)
    with pytest.raises(EdgekdError) as stopped:
        fit(tiny_net(), loader, loss, cfg, "distill tiny", checkpoint, on_epoch=loss.set_epoch, section="distill.train")
    message = str(stopped.value)
    assert message.startswith("distill tiny: the loss became nan in epoch 2/3, so the stage stopped")
    assert "lower distill.train.lr (0.01) or set distill.train.clip_grad_norm = 1.0" in message
    assert f"epoch 1's checkpoint stays ({checkpoint}), so --resume goes on from it" in message
    kept = load_checkpoint(checkpoint)
    assert kept["epoch"] == 1 and all(torch.isfinite(w).all() for w in kept["model"].values())
    loss.diverges_at = 99  # the cause fixed: the rerun goes on from epoch 1 to the end
    fit(tiny_net(), loader, loss, cfg, "distill tiny", checkpoint, on_epoch=loss.set_epoch)
    assert load_checkpoint(checkpoint)["epoch"] == 3


@bad_input(
    "runs",
    "a loss that becomes NaN or infinite in training (e.g. `distill.train.lr = 1e30`)",
    'the stage stops: "the loss became nan in epoch 2/2", names the lr setting; the last checkpoint stays',
)
def test_a_diverging_distillation_stops_naming_the_stage_epoch_and_setting(tmp_path, image_folder):
    teacher = export_teacher(MeanColourTeacher(), tmp_path / "teacher.onnx")
    config = write_config(tmp_path / "tiny.toml", FP32_ONNX | {"teacher.check_accuracy": True})
    args = ["build", "--target", "x86", "--config", str(config), "--data", str(image_folder)]
    args += ["--teacher", str(teacher), "--out", str(tmp_path / "out")]
    args += ["--set", "distill.train.epochs=2", "--set", "distill.train.lr=1e30"]
    done = subprocess.run([sys.executable, "-m", "edgekd", *args], capture_output=True, text=True)
    # one step per epoch (14 training images): epoch 1 ends finite, its step sends the weights to 1e30
    assert_one_line_error(
        done, "distill mobilenet_v3_small (kd, cached teacher): the loss became", "in epoch 2/2, so the stage stopped",
        "lower distill.train.lr (1e+30)", "epoch 1's checkpoint stays", "--resume goes on from it",
    )  # fmt: skip
    (kept,) = (tmp_path / "out" / "work").glob("distill-*/distill.ckpt")
    assert load_checkpoint(kept)["epoch"] == 1
    resumed = subprocess.run([sys.executable, "-m", "edgekd", *args, "--resume"], capture_output=True, text=True)
    assert "resuming after epoch 1/2" in said(resumed)
