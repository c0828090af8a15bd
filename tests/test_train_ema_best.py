"""TrainConfig's ema_decay and keep: what the training loop ends with, and exact resumes."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from edgekd.errors import EdgekdError
from edgekd.training.loop import TrainConfig, cross_entropy, fit, load_checkpoint

DATA = TensorDataset(torch.randn(24, 4, generator=torch.Generator().manual_seed(0)), torch.arange(24) % 2)


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))  # BatchNorm: buffers too


def states(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def sgd(epochs: int = 1, **options) -> TrainConfig:
    return TrainConfig(**{"epochs": epochs, "lr": 0.1, "schedule": "constant", "weight_decay": 0.0} | options)


def test_ema_is_the_exponential_average_of_the_steps_weights():
    loader = DataLoader(DATA, batch_size=8)  # 3 steps
    seen: list[dict[str, torch.Tensor]] = []  # the weights before each step

    def recording(model, batch):
        seen.append(states(model))
        return cross_entropy(model, batch)

    last = fit(tiny(), loader, recording, sgd(), "plain", mixed_precision=False)
    steps = seen[1:] + [states(last)]  # the weights after each step
    seen.clear()
    averaged = fit(tiny(), loader, recording, sgd(ema_decay=0.9), "ema", mixed_precision=False)
    assert len(seen) == 3  # the average does not change the steps taken

    expected = dict(steps[0])  # torch's EMA starts from the first step's weights
    for step in steps[1:]:
        for key, value in step.items():
            expected[key] = 0.9 * expected[key] + 0.1 * value if value.is_floating_point() else value
    torch.testing.assert_close(states(averaged), expected)
    # BatchNorm's statistics are averaged, its batch count is the last step's (not rounded down)
    assert not torch.equal(averaged[1].running_mean, last[1].running_mean)
    assert int(averaged[1].num_batches_tracked) == 3


def test_keep_best_returns_the_best_epochs_weights():
    scores = iter([0.5, 0.9, 0.9, 0.7])  # epoch 2 ties epoch 3 (the earlier is kept); the last is worse
    evaluated: list[dict[str, torch.Tensor]] = []

    def evaluate(model: nn.Module) -> float:
        evaluated.append(states(model))
        return next(scores)

    loader = DataLoader(DATA, batch_size=8)
    model = fit(tiny(), loader, cross_entropy, sgd(4, keep="best"), "best", mixed_precision=False, evaluate=evaluate)
    assert len(evaluated) == 4
    assert_same(states(model), evaluated[1])
    assert not torch.equal(model[0].weight, evaluated[3]["0.weight"])


def test_keep_best_needs_an_evaluate_function():
    with pytest.raises(ValueError, match="evaluate"):
        fit(tiny(), DataLoader(DATA, batch_size=8), cross_entropy, sgd(keep="best"), "best", mixed_precision=False)


class Killed(Exception):
    pass


def test_a_resumed_run_ends_as_an_unbroken_one(tmp_path):
    cfg = sgd(3, ema_decay=0.8, keep="best", lr=0.5)
    loader = DataLoader(DATA, batch_size=8, shuffle=True)  # fit seeds each epoch's shuffle
    start = states(tiny())

    def evaluate(model: nn.Module) -> float:
        # closest to the start scores best: the first epoch, which the resumed run knows only from
        # the checkpoint
        return -sum(float((v - start[k]).norm()) for k, v in model.state_dict().items() if v.is_floating_point())

    def kill_after_first_epoch(epoch: int) -> None:
        if epoch == 1:
            raise Killed

    unbroken = fit(tiny(), loader, cross_entropy, cfg, "unbroken", tmp_path / "a.ckpt", evaluate=evaluate)
    killed = tmp_path / "b.ckpt"
    with pytest.raises(Killed):
        fit(tiny(), loader, cross_entropy, cfg, "killed", killed, kill_after_first_epoch, evaluate=evaluate)
    assert load_checkpoint(killed)["epoch"] == 1
    resumed = fit(tiny(), loader, cross_entropy, cfg, "resumed", killed, evaluate=evaluate)
    assert load_checkpoint(killed)["best"]["epoch"] == 1
    assert_same(states(resumed), states(unbroken))
    assert_same(load_checkpoint(killed)["ema"], load_checkpoint(tmp_path / "a.ckpt")["ema"])


def test_a_checkpoint_without_the_ema_is_refused_by_a_run_with_it(tmp_path):
    loader = DataLoader(DATA, batch_size=8)
    fit(tiny(), loader, cross_entropy, sgd(), "plain", tmp_path / "run.ckpt", mixed_precision=False)
    with pytest.raises(EdgekdError, match="holds no 'ema' state"):
        fit(tiny(), loader, cross_entropy, sgd(2, ema_decay=0.9), "ema", tmp_path / "run.ckpt")


@pytest.mark.parametrize("decay", [0, 1, -0.5, 1.5])
def test_ema_decay_outside_0_1_is_refused(decay):
    with pytest.raises(ValidationError, match="ema_decay"):
        TrainConfig(ema_decay=decay)


def test_keep_takes_last_or_best():
    assert TrainConfig().keep == "last" and TrainConfig().ema_decay is None
    with pytest.raises(ValidationError, match="keep"):
        TrainConfig(keep="worst")


@pytest.mark.slow
def test_ema_and_keep_best_train_a_fake_quantized_model():
    """QAT trains an NNCF model: it deep-copies, and its integer settings (bit widths, levels)
    stay whole in the average."""
    from torchvision.models import mobilenet_v2

    from edgekd.quantizers.nncf import insert_fake_quant
    from edgekd.targets import Int8Flavour

    torch.manual_seed(0)
    images = torch.randn(8, 3, 8, 8)
    model = insert_fake_quant(mobilenet_v2(num_classes=2), Int8Flavour(), [images])
    settings = {k: v.clone() for k, v in model.named_buffers() if not v.is_floating_point()}
    loader = DataLoader(TensorDataset(images, torch.arange(8) % 2), batch_size=4)
    cfg = TrainConfig(epochs=2, lr=1e-3, optimizer="adamw", ema_decay=0.9, keep="best")
    evaluated: list[dict[str, torch.Tensor]] = []

    def evaluate(averaged: nn.Module) -> float:
        evaluated.append(states(averaged))
        assert all(torch.equal(v, settings[k]) for k, v in averaged.named_buffers() if k in settings)
        return -len(evaluated)  # the first epoch is best

    trained = fit(model, loader, cross_entropy, cfg, "qat", mixed_precision=False, evaluate=evaluate)
    assert_same(states(trained), evaluated[0])
    assert all(int(p) == 8 for name, p in trained.named_parameters() if name.endswith("_num_bits"))
    assert torch.isfinite(trained(images)).all()
