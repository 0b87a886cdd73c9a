"""Resource limits for rendering templates that admins write: sizes, loop work, and time.

A template is code, and one slow or huge render must cost only its own delivery. The
sandboxed environment bounds what can grow in one step: the operators `*`, `**` and `+`, width
arguments of the padding filters, and `range` (one budget of iterations per render). The output
is capped. A time budget stops what is left, such as nested loops over bounded lists: a
watchdog thread raises `RenderTimeout` in the rendering thread once its deadline has passed.
"""

from __future__ import annotations

import ctypes
import re
import string
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

T = TypeVar("T")

MAX_OUTPUT_CHARS = 1_000_000  # per rendered part
MAX_VALUE_LENGTH = 100_000  # a string or list that one operator may build
MAX_EXPONENT_BITS = 4_096  # an integer power's result
MAX_RANGE_ITERATIONS = 100_000  # all `range` loops of one render together
MAX_WIDTH = 1_000  # width arguments of center, indent, wordwrap, truncate
RENDER_TIME_BUDGET_S = 1.0


class RenderTimeout(Exception):
    """A render ran past its time budget."""


def _length(value: Any) -> int | None:
    return len(value) if isinstance(value, str | bytes | list | tuple) else None


class LimitedSandbox(SandboxedEnvironment):
    """Jinja's sandbox with bounded operators, widths, ranges (see the module docstring)."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals["range"] = self._range
        for name in ("center", "indent", "wordwrap", "truncate"):
            self.filters[name] = _bounded_widths(self.filters[name])
        self.filters["format"] = _checked_format(self.filters["format"])
        self._range_budget = threading.local()

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for value, times in ((left, right), (right, left)):
                size = _length(value)
                if size is not None and isinstance(times, int) and size * times > MAX_VALUE_LENGTH:
                    raise SecurityError(f"a value of {size * times:,} items is over the limit")
        elif operator == "**":
            ints = isinstance(left, int) and isinstance(right, int) and abs(left) > 1
            if ints and right > 0 and right * abs(left).bit_length() > MAX_EXPONENT_BITS:
                raise SecurityError("an integer power over the limit")
        elif operator == "%" and isinstance(left, str):
            check_printf_widths(left)
        elif operator == "+":
            sizes = [size for size in (_length(left), _length(right)) if size is not None]
            if len(sizes) == 2 and sum(sizes) > MAX_VALUE_LENGTH:  # both sides have a length
                raise SecurityError("a concatenation over the size limit")
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """`str.format` in templates, refusing widths over the limit (a C call: no watchdog)."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        template = getattr(value, "__self__", "")

        def checked(*args: Any, **kwargs: Any) -> str:
            check_format_widths(str(template))
            return wrapped(*args, **kwargs)

        return checked

    def reset_budget(self) -> None:
        """Give the calling thread's next render a full `range` budget."""
        self._range_budget.left = MAX_RANGE_ITERATIONS

    def _range(self, *args: int) -> Iterator[int]:
        values = range(*args)
        left = getattr(self._range_budget, "left", MAX_RANGE_ITERATIONS) - len(values)
        if left < 0:
            raise SecurityError(f"range: over {MAX_RANGE_ITERATIONS:,} iterations in one render")
        self._range_budget.left = left
        return iter(values)


def _bounded_widths(filter_: Callable[..., Any]) -> Callable[..., Any]:
    def bounded(*args: Any, **kwargs: Any) -> Any:
        for value in (*args[1:], *kwargs.values()):
            if isinstance(value, int) and not isinstance(value, bool) and value > MAX_WIDTH:
                raise SecurityError(f"a width of {value:,} is over the limit of {MAX_WIDTH:,}")
        return filter_(*args, **kwargs)

    # Keep Jinja's pass_environment/pass_eval_context markers on the wrapper.
    bounded.__dict__.update(filter_.__dict__)
    return bounded


_PRINTF_WIDTH = re.compile(r"%[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
_NUMBER = re.compile(r"\d+")


def check_printf_widths(template: str) -> None:
    """Refuse `%` formatting whose width or precision could build a huge string."""
    for width, precision in _PRINTF_WIDTH.findall(template):
        for value in (width, precision):
            if value == "*" or (value and int(value) > MAX_WIDTH):
                raise SecurityError(f"a %-format width over the limit of {MAX_WIDTH:,}")


def check_format_widths(template: str) -> None:
    """Refuse `str.format` specs with widths over the limit or nested replacement fields."""
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError:
        return  # str.format itself will refuse it
    for _literal, _field, spec, _conversion in fields:
        if spec and ("{" in spec or any(int(n) > MAX_WIDTH for n in _NUMBER.findall(spec))):
            raise SecurityError(f"a format width over the limit of {MAX_WIDTH:,}")


def _checked_format(filter_: Callable[..., Any]) -> Callable[..., Any]:
    def checked(value: Any, *args: Any, **kwargs: Any) -> Any:
        check_printf_widths(str(value))
        return filter_(value, *args, **kwargs)

    checked.__dict__.update(filter_.__dict__)
    return checked


def capped(chunks: Iterator[str], limit: int = MAX_OUTPUT_CHARS) -> str:
    """Join a render's output chunks, refusing more than `limit` characters."""
    out, size = [], 0
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise SecurityError(f"output over {limit:,} characters")
        out.append(chunk)
    return "".join(out)


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
                self._deadlines.pop(thread_id, None)
            _set_async_exc(thread_id, None)  # drop one that fired and was not delivered yet

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
