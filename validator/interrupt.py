"""SIGTERM / SIGINT during an audit become an exception the gate turns into an ERROR verdict.

A CI runner that cancels a job sends SIGTERM; Ctrl-C sends SIGINT. Without a handler the process dies
mid-write or leaves Python's KeyboardInterrupt to whoever catches it; with this one the audit stops at the
next Python bytecode, the verdict says it was interrupted and the reports are still written, and then the
interruption goes on to the caller (the CLI exits 3).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class AuditInterrupted(BaseException):
    """Raised in the main thread when a stop signal arrives. A BaseException, so that the ``except Exception``
    clauses of user preprocessing code or libraries cannot swallow it. ``audit`` / ``merge`` write the ERROR
    verdict and reports, then raise it again with ``verdict`` set, so that the caller stops too."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.verdict = None


# The signals received inside the current ``interruptible`` block. The raise alone is not enough: a signal
# that lands inside a C extension's callback (TensorFlow's nest flattening calls __import__) comes out as a
# SystemError that library code may catch and carry on from, and the audit would end as if never stopped.
_received: list[str] = []


def _raise(signum, _frame) -> None:
    name = signal.Signals(signum).name
    _received.append(name)
    raise AuditInterrupted(name)


def received() -> str | None:
    """The first stop signal received in the current (or last) ``interruptible`` block, or None."""
    return _received[0] if _received else None


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise :class:`AuditInterrupted`; the previous handlers come back
    after it. Outside the main thread (signals cannot be handled there) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()
    previous = {sig: signal.signal(sig, _raise) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
