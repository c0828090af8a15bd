"""KD's temperature schedules: golden values of T(e) = max(T0 * d^e, floor) and of the KD loss at that
T (worked out here with numpy), the linear schedule kept as it was, and contradictory options refused."""

import math

import numpy as np
import pytest
import torch

from edgekd.errors import EdgekdError
from edgekd.losses import create_loss

torch.manual_seed(0)
S, T = torch.randn(3, 5), torch.randn(3, 5)
Y = torch.tensor([1, 4, 0])


def kd_term(s, t, temperature):
    """T^2 * mean_i KL(softmax(t_i/T) || softmax(s_i/T)), in float64."""

    def log_softmax(z):
        z = np.asarray(z, dtype=np.float64) / temperature
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    log_p, log_q = log_softmax(t), log_softmax(s)
    return temperature**2 * float((np.exp(log_p) * (log_p - log_q)).sum(axis=1).mean())


def kd_only(params, epoch):
    loss = create_loss("kd", {"ce_weight": 0.0, "kd_weight": 1.0} | params)
    loss.epoch = epoch
    return loss


HALVED = {"temperature": 10.0, "temperature_decay": 0.5}  # "T0 = 10 halved every epoch"
FIVE_095 = {"temperature": 5.0, "temperature_decay": 0.95}  # "T = 5 x 0.95^epoch"


@pytest.mark.parametrize(
    "params, epoch, expected",
    [
        (HALVED, 0, 10.0),
        (HALVED, 1, 5.0),
        (HALVED, 2, 2.5),
        (HALVED, 3, 1.25),
        (HALVED, 4, 1.0),  # 0.625 is under the floor 1
        (HALVED, 50, 1.0),
        (FIVE_095, 0, 5.0),
        (FIVE_095, 1, 4.75),
        (FIVE_095, 10, 5 * 0.95**10),
        (FIVE_095, 31, 5 * 0.95**31),  # 1.020: the last epoch above the floor
        (FIVE_095, 32, 1.0),
    ],
)
def test_exponential_schedule_golden(params, epoch, expected):
    loss = kd_only(params, epoch)
    assert loss.temperature() == pytest.approx(expected, rel=1e-12)
    got = loss(S, T, Y)
    torch.testing.assert_close(got, torch.tensor(kd_term(S, T, expected), dtype=torch.float32))


def test_temperature_end_is_the_floor_of_the_exponential_schedule():
    params = HALVED | {"temperature_end": 3.0}
    assert [kd_only(params, e).temperature() for e in range(5)] == [10.0, 5.0, 3.0, 3.0, 3.0]


def test_skipped_schedules_start_at_the_floor():
    for params, floor in [(HALVED, 1.0), (FIVE_095 | {"temperature_end": 2.0}, 2.0)]:
        loss = kd_only(params, 0)
        loss.skip_schedules()  # QAT fine-tuning of a distilled student
        assert loss.temperature() == floor


@pytest.mark.parametrize("epoch", [0, 1, 2, 4, 9])
def test_temperature_end_alone_is_still_linear(epoch):
    # configs written before the exponential schedule keep their meaning
    loss = kd_only({"temperature": 4.0, "temperature_end": 1.0, "schedule_epochs": 4}, epoch)
    assert loss.temperature() == pytest.approx(4.0 - 3.0 * min(epoch / 4, 1.0))
    assert kd_only({"temperature": 4.0}, epoch).temperature() == 4.0


@pytest.mark.parametrize(
    "params, words",
    [
        (HALVED | {"schedule_epochs": 5}, "schedule_epochs"),
        ({"temperature": 1.0, "temperature_decay": 0.5}, "above it"),  # T0 at the default floor 1
        (HALVED | {"temperature_end": 12.0}, "floor 12"),
        ({"temperature_decay": 1.0}, "option 'temperature_decay'"),
        ({"temperature_decay": 0.0}, "option 'temperature_decay'"),
    ],
)
def test_contradictory_or_bad_schedules_are_one_line_errors(params, words):
    with pytest.raises(EdgekdError, match="loss 'kd'") as e:
        create_loss("kd", params)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_five_times_095_reaches_the_floor_where_the_formula_says():
    first_at_floor = math.ceil(math.log(1 / 5) / math.log(0.95))
    assert kd_only(FIVE_095, first_at_floor).temperature() == 1.0
    assert kd_only(FIVE_095, first_at_floor - 1).temperature() > 1.0
