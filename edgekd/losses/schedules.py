"""Epoch schedules of the losses' hyperparameters. Each holds its end value past its length, so
`DistillLoss.skip_schedules` (epoch far past every schedule) gives the end value."""

import math


def linear(start: float, end: float, epoch: int, epochs: int) -> float:
    """start + (end - start) * min(epoch / epochs, 1)."""
    return start + (end - start) * min(epoch / epochs, 1.0)


def exponential(start: float, decay: float, floor: float, epoch: int) -> float:
    """max(start * decay^epoch, floor); decay 0.5 halves the value every epoch."""
    return max(start * decay**epoch, floor)


def cosine_rise(start: float, end: float, epoch: int, epochs: int) -> float:
    """start + (end - start) * (1 - cos(pi * min(epoch / epochs, 1))) / 2: slow, fast, slow
    (CTKD's curriculum, the paper's lambda_min + (lambda_max - lambda_min)(1 + cos((1 + e/E) pi)) / 2)."""
    return start + (end - start) * (1 - math.cos(math.pi * min(epoch / epochs, 1.0))) / 2


def temperature_at(epoch: int, temperature: float, end: float | None, decay: float | None, epochs: int) -> float:
    """T of a `temperature` / `temperature_end` / `temperature_decay` / `schedule_epochs` config:
    exponential when `decay` is set (floor: `end`, else 1), linear to `end` over `epochs` when
    only `end` is set, else constant."""
    if decay is not None:
        return exponential(temperature, decay, 1.0 if end is None else end, epoch)
    if end is not None:
        return linear(temperature, end, epoch, epochs)
    return temperature


def check_temperature_schedule(
    temperature: float, end: float | None, decay: float | None, set_fields: set[str]
) -> None:
    """Raises ValueError (one line) for options that contradict each other; `set_fields`: the
    options the user wrote (pydantic's model_fields_set), as a default schedule_epochs is no choice."""
    if decay is None:
        return
    if "schedule_epochs" in set_fields:
        raise ValueError(
            "schedule_epochs is the length of the linear schedule and temperature_decay makes it exponential: drop one"
        )
    floor = 1.0 if end is None else end
    if temperature <= floor:
        raise ValueError(
            f"temperature_decay decays temperature {temperature:g} towards the floor {floor:g} (temperature_end, "
            "else 1): temperature must be above it"
        )
