"""A student that collapses stops the run before the collapsed epoch is checkpointed, with one
line naming the method, the epoch and the setting to change; noise does not stop it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from edgekd.errors import EdgekdError
from edgekd.losses import create_loss
from edgekd.training.collapse import CollapseGuard
from edgekd.training.loop import TrainConfig, accuracy, fit, predict
from tests.bad_inputs import bad_input

CLASSES = 10


def separable(n: int, seed: int) -> TensorDataset:
    """Ten classes a linear model tells apart in an epoch: each class a distant mean."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % CLASSES
    means = torch.eye(CLASSES, 16) * 6
    return TensorDataset(means[labels] + torch.randn(n, 16, generator=g), labels)


def guard(val: DataLoader, teacher_accuracy: float = 0.9, fix: str = "lower distill.train.lr") -> CollapseGuard:
    return CollapseGuard("distill tiny (dkd)", fix, CLASSES, lambda m: accuracy(*predict(m, val)), teacher_accuracy)


@bad_input(
    "runs",
    "a student that collapses in training (its val accuracy halves, or stays at chance)",
    'the stage stops: "the student collapsed in epoch 3/4", names the settings; the last good checkpoint stays',
)
def test_a_collapsing_student_stops_before_its_epoch_is_checkpointed(tmp_path):
    train, val = DataLoader(separable(200, 0), batch_size=20, shuffle=True), DataLoader(separable(100, 1))
    phase = {"collapse": False}

    def loss_fn(model, batch):  # learns the labels, then (from epoch 3) is pulled to one class
        images, labels = batch
        target = torch.zeros_like(labels) if phase["collapse"] else labels
        return F.cross_entropy(model(images), target)

    def on_epoch(epoch: int) -> None:
        phase["collapse"] = epoch >= 2

    checkpoint = tmp_path / "distill.ckpt"
    cfg = TrainConfig(epochs=4, lr=0.05, optimizer="sgd", schedule="constant")
    with pytest.raises(EdgekdError) as stopped:
        fit(nn.Linear(16, CLASSES), train, loss_fn, cfg, "tiny", checkpoint, on_epoch, check_epoch=guard(val))
    message = str(stopped.value)
    assert message.startswith("distill tiny (dkd): the student collapsed in epoch 3/4 (val accuracy fell to ")
    assert message.endswith("lower distill.train.lr; epoch 2's checkpoint stays") and "\n" not in message
    assert torch.load(checkpoint, weights_only=False)["epoch"] == 2  # the collapsed epoch was not written


def test_stuck_near_chance_from_the_third_epoch_while_the_teacher_knows_better():
    # DKD with a one-epoch ramp, 3 epochs at lr 0.1, CIFAR-10 (teacher 91.6%): 12.8%
    scores = iter([0.10, 0.11, 0.128])
    stuck = CollapseGuard("distill s (dkd)", "fix it", CLASSES, lambda m: next(scores), 0.9)
    stuck(0, 3, None), stuck(1, 3, None)  # the first two epochs are allowed to be slow
    with pytest.raises(EdgekdError, match=r"epoch 3/3 \(val accuracy is 12.8%, chance is 10.0%, the teacher's 90.0%\)"):
        stuck(2, 3, None)


@pytest.mark.parametrize(
    "scores, teacher",
    [
        ([0.30, 0.20, 0.35], 0.9),  # a dip, not half of the best
        ([0.10, 0.10, 0.10], 0.2),  # a teacher near chance (the tests' random teachers): nothing to learn
        ([0.10, 0.10, 0.16], 0.9),  # slow: above 1.5 times chance on the third epoch
        ([0.10, 0.10, 0.10], None),  # the teacher's accuracy unknown (a benchmark's own loop)
    ],
)
def test_slow_or_noisy_students_and_weak_teachers_go_on(scores, teacher):
    values = iter(scores)
    watching = CollapseGuard("distill s (kd)", "fix it", CLASSES, lambda m: next(values), teacher)
    for epoch in range(len(scores)):
        watching(epoch, len(scores), None)


def test_dkd_names_its_warmup_and_nckd_weight():
    loss = create_loss("dkd", {"nckd_weight": 8.0})
    loss.run_epochs = 3
    assert loss.collapse_fix("distill.train") == (
        "lengthen distill.params.warmup_epochs (now 3) or lower distill.params.nckd_weight (now 8) or distill.train.lr"
    )
