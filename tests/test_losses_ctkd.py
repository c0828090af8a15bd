"""CTKD against the paper's formulas, worked out here (never with the loss's helpers): the loss at the
learned temperature, the reversed gradient of that temperature, the cosine curriculum of lambda."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from edgekd.errors import EdgekdError
from edgekd.losses import LOSSES, create_loss

torch.manual_seed(0)
S, T = torch.randn(4, 6), 2 * torch.randn(4, 6)
Y = torch.tensor([0, 5, 2, 3])


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def ctkd_reference(s, t, y, temperature, ce_weight=0.1, kd_weight=0.9):
    """ce_weight * CE + kd_weight * T^2 * KL(softmax(t/T) || softmax(s/T)), float64 torch (T may need a gradient)."""
    s, t = s.double(), t.double()
    ce = -(s.log_softmax(1)[torch.arange(len(y)), y]).mean()
    log_p, log_q = (t / temperature).log_softmax(1), (s / temperature).log_softmax(1)
    return ce_weight * ce + kd_weight * temperature**2 * (log_p.exp() * (log_p - log_q)).sum(1).mean()


def paper_lambda(epoch, lo, hi, epochs):
    """lambda_n = lambda_min + (lambda_max - lambda_min) / 2 * (1 + cos((1 + min(n, E) / E) * pi))."""
    return lo + (hi - lo) / 2 * (1 + math.cos((1 + min(epoch, epochs) / epochs) * math.pi))


def test_registered_with_the_authors_defaults():
    assert "ctkd" in LOSSES.names()
    loss = create_loss("ctkd")
    assert loss.temperature() == pytest.approx(1 + 20 * sigmoid(1.0))  # the authors' parameter starts at 1
    assert [p.numel() for p in loss.parameters()] == [1]  # one global temperature, trained with the student


def test_loss_golden_at_the_initial_temperature():
    expected = ctkd_reference(S, T, Y, 1 + 20 * sigmoid(1.0))
    torch.testing.assert_close(create_loss("ctkd")(S, T, Y), expected.float())


def test_temperature_init_and_range():
    loss = create_loss("ctkd", {"temperature_min": 2.0, "temperature_max": 6.0, "temperature_init": 4.0})
    assert loss.temperature() == pytest.approx(4.0)
    params = {"temperature_init": 3.0, "ce_weight": 0.5, "kd_weight": 2.0}
    got = create_loss("ctkd", params)(S, T, Y)
    torch.testing.assert_close(got, ctkd_reference(S, T, Y, 3.0, 0.5, 2.0).float())


@pytest.mark.parametrize("epoch", [0, 1, 2, 3, 4, 7])
def test_lambda_follows_the_cosine_curriculum(epoch):
    loss = create_loss("ctkd", {"lambda_min": 0.2, "lambda_max": 0.8, "curriculum_epochs": 4})
    loss.epoch = epoch
    assert loss.reversal() == pytest.approx(paper_lambda(epoch, 0.2, 0.8, 4))


def test_lambda_defaults_rise_from_0_to_1_in_10_epochs_and_qat_starts_at_the_end():
    loss = create_loss("ctkd")
    for epoch, expected in [(0, 0.0), (5, 0.5), (10, 1.0), (30, 1.0)]:
        loss.epoch = epoch
        assert loss.reversal() == pytest.approx(expected, abs=1e-12)
    loss.epoch = 0
    loss.skip_schedules()
    assert loss.reversal() == 1.0


@pytest.mark.parametrize("epoch, lam", [(5, 0.5), (10, 1.0), (0, 0.0)])
def test_the_temperature_gradient_is_reversed_and_scaled_by_lambda(epoch, lam):
    loss = create_loss("ctkd", {"temperature_init": 3.0})
    loss.epoch = epoch
    student = S.clone().requires_grad_()
    loss(student, T, Y).backward()

    temperature = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    reference_student = S.double().requires_grad_()
    ctkd_reference(reference_student, T, Y, temperature).backward()
    p = math.log((3.0 - 1.0) / (21.0 - 3.0))
    dtemperature_dp = 20 * sigmoid(p) * (1 - sigmoid(p))
    expected = -lam * temperature.grad.item() * dtemperature_dp
    assert loss.temperature_logit.grad.item() == pytest.approx(expected, rel=1e-4, abs=1e-9)
    if lam:
        assert np.sign(loss.temperature_logit.grad.item()) == -np.sign(temperature.grad.item())
    # the student's own gradient is not reversed
    torch.testing.assert_close(student.grad, reference_student.grad.float())


def test_a_descent_step_on_the_temperature_raises_the_kd_loss():
    loss = create_loss("ctkd", {"ce_weight": 0.0, "kd_weight": 1.0, "temperature_init": 3.0})
    loss.epoch = 10  # lambda 1
    before = loss(S, T, Y)
    before.backward()
    torch.optim.SGD(loss.parameters(), lr=0.5).step()
    assert loss(S, T, Y).item() > before.item()


def test_create_loss_trains_a_tiny_student_and_its_temperature():
    torch.manual_seed(1)
    student, teacher = nn.Linear(8, 6), nn.Linear(8, 6)
    x, y = torch.randn(16, 8), torch.randint(0, 6, (16,))
    loss = create_loss("ctkd")
    loss.epoch = 10
    start_t, start_w = loss.temperature(), student.weight.detach().clone()
    optimizer = torch.optim.SGD([*student.parameters(), *loss.parameters()], lr=0.1)  # as fit() builds it
    for _ in range(5):
        optimizer.zero_grad()
        with torch.no_grad():
            teacher_logits = teacher(x)
        loss(student(x), teacher_logits, y).backward()
        optimizer.step()
    assert loss.temperature() != pytest.approx(start_t, abs=1e-6)
    assert not torch.equal(student.weight, start_w)
    assert math.isfinite(loss.temperature()) and 1.0 < loss.temperature() < 21.0


@pytest.mark.parametrize(
    "params, words",
    [
        ({"temperature_min": 5.0, "temperature_max": 5.0}, "temperature_max 5 must be above temperature_min 5"),
        ({"temperature_init": 21.0}, "temperature_init 21 must lie strictly between"),
        ({"temperature_min": 2.0, "temperature_init": 1.5}, "temperature_init 1.5"),
        ({"lambda_min": 0.9, "lambda_max": 0.5}, "lambda_max 0.5 is below lambda_min 0.9"),
        ({"lambda_max": -1.0}, "option 'lambda_max'"),
        ({"curriculum_epochs": 0}, "option 'curriculum_epochs'"),
        ({"alpha": 0.9}, "renamed"),
    ],
)
def test_bad_options_are_one_line_errors(params, words):
    with pytest.raises(EdgekdError, match="loss 'ctkd'") as e:
        create_loss("ctkd", params)
    assert words in str(e.value) and "\n" not in str(e.value)
