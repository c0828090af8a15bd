"""Training-loop options, each shown to change what a step does."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from edgekd.training.loop import TrainConfig, fit


def one_step(clip: float | None) -> float:
    """How far one SGD step (lr 1, Nesterov momentum 0.9, no decay) moves the weights, under a
    loss a million times too large."""
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    before = torch.cat([p.detach().clone().flatten() for p in model.parameters()])
    data = DataLoader(TensorDataset(torch.randn(8, 4), torch.randint(0, 2, (8,))), batch_size=8)
    cfg = TrainConfig(epochs=1, lr=1.0, schedule="constant", weight_decay=0.0, clip_grad_norm=clip)

    def huge(model, batch):
        return 1e6 * nn.functional.cross_entropy(model(batch[0]), batch[1])

    fit(model, data, huge, cfg, "clip test", mixed_precision=False)
    return float((torch.cat([p.detach().flatten() for p in model.parameters()]) - before).norm())


def test_clip_grad_norm_bounds_the_step():
    # the first Nesterov step is lr * (1 + momentum) * gradient: at most 1.9 x the clipped norm
    assert one_step(clip=1e-3) <= 1.9e-3 * (1 + 1e-5)
    assert one_step(clip=None) > 1e3
