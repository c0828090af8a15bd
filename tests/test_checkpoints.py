"""A damaged epoch checkpoint is named when a run resumes from it, and a finished epoch is
never trained twice."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from edgekd.errors import EdgekdError
from edgekd.training.loop import TrainConfig, cpu_state, cross_entropy, fit
from tests.bad_inputs import bad_input


def loader() -> DataLoader:
    return DataLoader(TensorDataset(torch.randn(16, 4), torch.randint(0, 2, (16,))), batch_size=8)


def test_fit_resumes_after_the_checkpointed_epoch_only(tmp_path):
    checkpoint, cfg = tmp_path / "run.ckpt", TrainConfig(epochs=3, lr=0.01)

    def interrupt_at_second_epoch(epoch: int) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(nn.Linear(4, 2), loader(), cross_entropy, cfg, "a", checkpoint, on_epoch=interrupt_at_second_epoch)
    seen: list[int] = []
    fit(nn.Linear(4, 2), loader(), cross_entropy, cfg, "a", checkpoint, on_epoch=seen.append)
    assert seen == [1, 2] and torch.load(checkpoint, weights_only=False)["epoch"] == 3


@bad_input("models", "a truncated training checkpoint on --resume", 'refused: "checkpoint FILE is corrupt", delete it')
def test_truncated_checkpoint_is_named_on_resume(tmp_path):
    checkpoint = tmp_path / "distill.ckpt"
    fit(nn.Linear(4, 2), loader(), cross_entropy, TrainConfig(epochs=1, lr=0.01), "a", checkpoint)
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    with pytest.raises(EdgekdError, match=f"checkpoint {checkpoint} is corrupt .*delete it"):
        fit(nn.Linear(4, 2), loader(), cross_entropy, TrainConfig(epochs=2, lr=0.01), "a", checkpoint)


def test_half_precision_weights_never_reach_a_checkpoint():
    # autocast computes in bf16 but must leave the weights fp32: a bf16 weight is a bug, not a checkpoint
    assert cpu_state(nn.Linear(4, 2))["weight"].dtype == torch.float32
    with pytest.raises(RuntimeError, match=r"half-precision weights would be checkpointed: \['weight', 'bias'\]"):
        cpu_state(nn.Linear(4, 2).to(torch.bfloat16))
