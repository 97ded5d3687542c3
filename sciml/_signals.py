"""SIGINT and SIGTERM for the command line: stop promptly, cleanly, and say so in one line.

Python turns SIGINT into a `KeyboardInterrupt` at whatever bytecode runs next. Inside a
garbage-collector callback (JAX registers one) that exception is printed and swallowed, and
raised from inside JAX while it is called back from C++ (compilation) it can abort the process.
An exception during the import of an extension module turns into an `ImportError`. Here a
signal that arrives in such a place is deferred: it is recorded, retried every 50 ms
(`SIGALRM`) until the interpreter is back in a safe frame, and also raised by `check()`, which
the training loops and the dataset writer call between steps. A signal in a safe frame raises
at once. A second signal always raises at once.

Nothing here is active unless the command line installs it (`handled()`); the library used
from Python keeps the interpreter's own handlers. `deferred()` holds any handler back around a
call into C that calls back into Python (the dataset writer's HDF5 calls).
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

_RETRY_S = 0.05
# Python frames from these packages are not interrupted: they may run inside a callback from
# C++ (XLA compilation, JAX's garbage-collector callback), or between two calls into a C
# library whose state must stay consistent (HDF5).
_DEFERRED_PACKAGES = tuple(f"{os.sep}{name}{os.sep}" for name in ("jax", "jaxlib", "h5py"))

_pending: int | None = None
_active = False
_previous_alarm = None


class Interrupted(KeyboardInterrupt):
    """The process received SIGINT or SIGTERM; `exit_status` is 128 + the signal number
    (130 for SIGINT, 143 for SIGTERM), as shells report it."""

    def __init__(self, signum: int):
        self.signum = signum
        self.exit_status = 128 + signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


_FINALIZER_FILES = ("weakref.py", "_weakrefset.py")


def _gc_callback_codes() -> set:
    return {getattr(cb, "__code__", None) for cb in gc.callbacks} - {None}


def _unsafe(frame: FrameType | None) -> bool:
    """Whether raising in `frame` could be swallowed (a garbage-collector or weakref
    callback, a finalizer), reach C++ (a JAX frame) or break an import."""
    if frame is None:
        return False
    if frame.f_code.co_filename and any(p in frame.f_code.co_filename for p in _DEFERRED_PACKAGES):
        return True
    callbacks = _gc_callback_codes()
    depth = 0
    while frame is not None and depth < 200:
        # An import in progress: an exception inside an extension module's initialisation
        # becomes an ImportError (with a traceback printed) instead of an interrupt.
        if frame.f_code in callbacks or frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        # A finalizer or a weakref callback: Python prints and ignores what it raises.
        code = frame.f_code
        if code.co_name == "__del__" or code.co_filename.endswith(_FINALIZER_FILES):
            return True
        frame, depth = frame.f_back, depth + 1
    return False


def _arm_retry() -> None:
    global _previous_alarm
    if _previous_alarm is None:
        _previous_alarm = signal.signal(signal.SIGALRM, _retry)
    signal.setitimer(signal.ITIMER_REAL, _RETRY_S, _RETRY_S)


def _disarm_retry() -> None:
    global _previous_alarm
    if _previous_alarm is not None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, _previous_alarm)
        _previous_alarm = None


def _raise(signum: int) -> None:
    _disarm_retry()
    raise Interrupted(signum)


def _handler(signum: int, frame: FrameType | None) -> None:
    global _pending
    first = _pending is None
    _pending = signum
    if first and _unsafe(frame):
        _arm_retry()
        return
    _raise(signum)


def _retry(signum: int, frame: FrameType | None) -> None:
    if _pending is not None and not _unsafe(frame):
        _raise(_pending)


def pending() -> int | None:
    """The signal received, if any (it stays recorded after it was raised)."""
    return _pending


def check() -> None:
    """Raises `Interrupted` if a signal arrived and was deferred; a no-op otherwise (and
    always, unless the command line installed the handlers)."""
    if _active and _pending is not None:
        _raise(_pending)


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """Installs the SIGINT and SIGTERM handlers for the duration of a command; restores the
    previous ones after. Outside the main thread it does nothing."""
    global _pending, _active
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # A signal ignored when the command started stays ignored (a shell without job control
    # starts background commands so, that Ctrl-C does not reach them).
    previous = {
        s: signal.getsignal(s)
        for s in (signal.SIGINT, signal.SIGTERM)
        if signal.getsignal(s) is not signal.SIG_IGN
    }
    _pending, _active = None, True
    for s in previous:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        _active = False
        _disarm_retry()
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Runs the body with SIGINT and SIGTERM only recorded, whoever handles them, and delivers
    them (to the same handlers) after it.

    For code that C calls back into (HDF5 writing through a Python file object): an exception
    a handler raised there would reach the C library as a failed call. Handlers run in the main
    thread only, so elsewhere there is nothing to defer.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(signum)
        if handler is not None:  # None: installed outside Python, cannot be restored
            previous[signum] = signal.signal(signum, lambda s, _: received.append(s))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in received:
            signal.raise_signal(signum)
