"""A Ctrl-C that a library swallows (catches BaseException, or checks signals in C and clears
the error) still stops the command: `interrupts.check()` raises it again at the next epoch or
stage, and the command's end. A real SIGINT to this process, in the main thread."""

from __future__ import annotations

import os
import signal
import time

import pytest

from edgekd import interrupts


@pytest.fixture(autouse=True)
def default_sigint():
    """Python's own SIGINT handler, as in a terminal: a test worker's may differ (an earlier
    test or library in the same pytest-xdist worker had left SIGINT ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def swallowed_sigint() -> None:
    """A SIGINT, raised and caught the way a careless library would."""
    arrived = False
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # the handler runs (and raises) at the next bytecode
    except BaseException:  # noqa: BLE001 - the swallowing under test
        arrived = True
    assert arrived, "SIGINT did not arrive"


def test_a_swallowed_ctrl_c_stops_at_the_next_check():
    with pytest.raises(KeyboardInterrupt), interrupts.watched():
        swallowed_sigint()
        interrupts.check()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_ctrl_c_swallowed_after_the_last_check_still_ends_the_block_interrupted():
    with pytest.raises(KeyboardInterrupt), interrupts.watched():
        swallowed_sigint()


def test_no_ctrl_c_no_interrupt_and_nothing_left_over():
    with interrupts.watched():
        interrupts.check()
    interrupts.check()  # outside, and after, a watched block: nothing recorded


def test_an_ignored_sigint_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as under nohup
    try:
        with interrupts.watched():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
            interrupts.check()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
