"""Ctrl-C is never lost. Python turns SIGINT into a KeyboardInterrupt wherever the main thread
happens to be, and a library that catches BaseException there (or C code that checks signals and
clears the error) swallows it: the build went on to ship its artifacts. `watched()` records every
SIGINT as well as raising it, and `check()`, called between epochs and between stages, raises it
again if it was swallowed."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_received = False


@contextmanager
def watched() -> Iterator[None]:
    """Records SIGINT inside the block, unless it is ignored (nohup) or has someone else's handler."""
    global _received
    _received = False
    in_main_thread = threading.current_thread() is threading.main_thread()
    if not in_main_thread or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
        check()  # swallowed after the last check: the command still ends as interrupted
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _received = False


def _on_sigint(signum, frame) -> None:
    global _received
    _received = True
    raise KeyboardInterrupt


def check() -> None:
    """Raises KeyboardInterrupt if a SIGINT came inside `watched()`, even if it was swallowed."""
    if _received:
        raise KeyboardInterrupt
