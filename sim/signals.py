"""SIGINT and SIGTERM handled by a run while it runs: a leaf shared by the simulated and the live runner."""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator


@contextmanager
def on_stop_signals(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """``handler(signum, frame)`` receives SIGINT and SIGTERM inside the block; the old handlers come back after.

    Only in the main thread (signals cannot be handled elsewhere); in another thread this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)
