"""The time budget of a render: a watchdog thread raises `RenderTimeout` in the rendering thread
once its deadline has passed. Python code stops there; what one C call builds is bounded before it
runs instead (app/domain/render_limits.py).
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

RENDER_TIME_BUDGET_S = 1.0


class RenderTimeout(Exception):
    """A render ran past its time budget."""


class _Watchdog:
    """One daemon thread that interrupts renders past their deadline."""

    def __init__(self, every_s: float = 0.02) -> None:
        self._every_s = every_s
        self._lock = threading.Lock()
        self._deadlines: dict[int, float] = {}
        self._thread: threading.Thread | None = None

    def run_within(self, budget_s: float, work: Callable[[], T]) -> T:
        """Run `work` in this thread; raise RenderTimeout in it once `budget_s` has passed."""
        thread_id = threading.get_ident()
        self._start()
        with self._lock:
            self._deadlines[thread_id] = time.monotonic() + budget_s
        try:
            return work()
        finally:
            with self._lock:  # after this, the watchdog no longer fires at this thread
                fired = self._deadlines.pop(thread_id, None) is None
            if fired:
                _set_async_exc(thread_id, None)  # drop it if it was not delivered yet

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(
                        target=self._loop, name="render-watchdog", daemon=True
                    )
                    self._thread.start()

    def _loop(self) -> None:
        while True:
            time.sleep(self._every_s)
            now = time.monotonic()
            with self._lock:
                for thread_id, deadline in list(self._deadlines.items()):
                    if now >= deadline:
                        del self._deadlines[thread_id]
                        _set_async_exc(thread_id, RenderTimeout)


def _set_async_exc(thread_id: int, exc: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc is not None else None
    )


WATCHDOG = _Watchdog()
