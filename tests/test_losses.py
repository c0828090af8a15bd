"""Hinton KD against values computed by hand (torchdistill-style golden values)."""

import math

import pytest
import torch

from edgekd.errors import EdgekdError
from edgekd.losses import LOSSES, create_loss, soft_kl


def softmax(row, t):
    e = [math.exp(v / t) for v in row]
    return [v / sum(e) for v in e]


def test_soft_kl_matches_hand_computation():
    student, teacher, t = [[1.0, 2.0, 0.5]], [[2.0, 0.0, 1.0]], 2.0
    p, q = softmax(teacher[0], t), softmax(student[0], t)
    expected = sum(a * math.log(a / b) for a, b in zip(p, q)) * t * t
    got = soft_kl(torch.tensor(student), torch.tensor(teacher), t)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_kd_is_weighted_sum_of_ce_and_batch_mean_kl():
    student = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
    teacher = [[2.0, 0.0, 1.0], [0.5, 0.5, 2.0]]
    labels, t, alpha = [1, 2], 4.0, 0.9
    kl = [sum(a * math.log(a / b) for a, b in zip(softmax(tt, t), softmax(ss, t))) for ss, tt in zip(student, teacher)]
    ce = [-math.log(softmax(ss, 1.0)[y]) for ss, y in zip(student, labels)]
    expected = (1 - alpha) * sum(ce) / 2 + alpha * t * t * sum(kl) / 2
    loss = create_loss("kd", {"temperature": t, "ce_weight": 1 - alpha, "kd_weight": alpha})
    got = loss(torch.tensor(student), torch.tensor(teacher), torch.tensor(labels))
    assert got.item() == pytest.approx(expected, rel=1e-5)  # float32 arithmetic


def test_kd_of_identical_logits_is_the_ce_part():
    logits, labels = torch.tensor([[0.3, 1.2, -0.4]]), torch.tensor([0])
    loss = create_loss("kd", {"ce_weight": 0.5, "kd_weight": 0.5})(logits, logits.clone(), labels)
    ce = -math.log(softmax([0.3, 1.2, -0.4], 1.0)[0])
    assert loss.item() == pytest.approx(0.5 * ce, rel=1e-6)


@pytest.mark.parametrize("params", [{"temperature": 0}, {"kd_weight": -0.1}, {"ce_weight": -1.0}])
def test_kd_rejects_out_of_range_options(params):
    with pytest.raises(EdgekdError, match="kd"):
        create_loss("kd", params)


def test_unknown_loss_suggests_nearest():
    with pytest.raises(EdgekdError, match="did you mean 'dkd'"):
        create_loss("dk")


def test_every_loss_weight_follows_one_convention():
    # `<term>_weight` for each term, `ce_weight`/`kd_weight` where a method has CE/KD; an earlier
    # name is refused with the new keys, never silently ignored
    for name in LOSSES.names():
        config = LOSSES.get(name).Config
        for key, field in config.model_fields.items():
            if (field.description or "").startswith("weight of"):
                assert key.endswith("_weight"), f"{name}.{key}"
            if "CE on the labels" in (field.description or ""):
                assert key in ("ce_weight", "head_ce_weight"), f"{name}.{key}"
        for old, hint in config.renamed.items():
            with pytest.raises(EdgekdError, match=f"option '{old}' is renamed: write"):
                create_loss(name, {old: 1.0})
            assert old not in config.model_fields and "write" in hint
