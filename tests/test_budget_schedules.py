"""Warm-ups and schedules the config leaves unset scale with the run's length (the share of the
run each method's paper used, at least one epoch) and ramp step by step, so that a 3-epoch run
ramps as gently as a 240-epoch one; the lengths a user sets are kept."""

from __future__ import annotations

import pytest

from edgekd.losses import create_loss


def at(name: str, params: dict, run_epochs: int | None, epochs_done: float):
    loss = create_loss(name, params)
    loss.run_epochs, loss.epoch = run_epochs, epochs_done
    return loss


@pytest.mark.parametrize("run_epochs, length", [(240, 20.0), (120, 10.0), (24, 5.0), (3, 3.0), (1, 1.0), (None, 5.0)])
def test_dkd_warmup_is_the_papers_share_of_the_run_at_least_five_epochs_or_the_run(run_epochs, length):
    assert at("dkd", {}, run_epochs, 0).warmup_length() == pytest.approx(length)


def test_dkd_ramps_from_zero_step_by_step_over_a_short_run():
    # 3 epochs: the warm-up is the whole run, a third done after the first epoch
    weights = [at("dkd", {}, 3, done).warmup_weight() for done in (0.0, 0.75, 1.5, 3.0)]
    assert weights == [0.0, 0.25, 0.5, 1.0]
    assert at("dkd", {"warmup_epochs": 0}, 3, 0).warmup_weight() == 1.0  # no warm-up
    assert at("dkd", {"warmup_epochs": 4}, 3, 0).warmup_length() == 4  # set by the user: kept


@pytest.mark.parametrize("run_epochs, done, expected", [(240, 5.0, 0.5), (240, 10.0, 1.0), (3, 0.5, 0.5), (3, 1, 1)])
def test_ctkd_curriculum_is_the_authors_share_of_the_run(run_epochs, done, expected):
    assert at("ctkd", {}, run_epochs, done).reversal() == pytest.approx(expected)


@pytest.mark.parametrize(
    "run_epochs, done, temperature", [(4, 2.0, 2.5), (4, 4.0, 1.0), (30, 15.0, 2.5), (None, 5, 2.5)]
)
def test_kd_temperature_schedule_spans_the_run_unless_set(run_epochs, done, temperature):
    loss = at("kd", {"temperature": 4.0, "temperature_end": 1.0}, run_epochs, done)
    assert loss.temperature() == pytest.approx(temperature)
    set_length = at("kd", {"temperature": 4.0, "temperature_end": 1.0, "schedule_epochs": 2}, run_epochs, 1.0)
    assert set_length.temperature() == pytest.approx(2.5)
