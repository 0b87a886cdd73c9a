"""Resource limits for rendering templates that admins write: sizes, loop work, and time.

A template is code, and one slow or huge render must cost only its own delivery. Python code is
stopped by a time budget (app/domain/render_watchdog.py), but a single C call is not:
`"x".ljust(3*10**8)`, a `join` with a long separator or `str()` of a list holding one string a
hundred thousand times allocate hundreds of megabytes in one step the watchdog cannot interrupt.
So every step that builds a value in C is checked, before it runs, against the size it would
produce:

- the operators `*`, `**`, `+`, `%` and `~` (the last through our own code generator);
- every call (`call`): string methods that grow their receiver (`ljust`, `center`, `zfill`,
  `expandtabs`, `replace`, `join`, `translate`, `format`) by the size they would return, and
  every argument by what it comes to written out;
- every filter: its arguments likewise, and the filters that grow their input (`join`,
  `replace`, `indent`, `center`, `wordwrap`, `truncate`, `batch`, `slice`, `sum`) by their result;
- every value written to the output (`finalize`), before it is turned into text.

What a value "comes to written out" is measured by a walk that stops as soon as it passes the
limit, so a list nested into itself a thousand times costs a few steps, not its size. Built-in
lists, dicts and sets cannot be changed in place (`append`, `extend`...: Jinja's immutable
sandbox), so nothing grows but through the checked steps; `namespace()` is the way to carry a
value across loop iterations. `range` has one budget of iterations per render, and the output of
each part is capped.

One module on purpose, over 300 lines: the checks only hold together (a step left unchecked
undoes the rest), and reading them side by side is how a gap is found.
"""

from __future__ import annotations

import re
import string
import threading
from collections.abc import Callable, Iterator
from typing import Any, cast

from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.nodes import Concat
from jinja2.runtime import markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_OUTPUT_CHARS = 1_000_000  # per rendered part
MAX_VALUE_LENGTH = 100_000  # a string or list that one operator may build
MAX_EXPONENT_BITS = 4_096  # an integer power's result
MAX_RANGE_ITERATIONS = 100_000  # all `range` loops of one render together
MAX_WIDTH = 1_000  # width arguments of center, indent, wordwrap, truncate, slice, batch
MAX_WRITTEN_CHARS = MAX_OUTPUT_CHARS  # what one value may come to when written out
MAX_LIPSUM_PARAGRAPHS = 100


def _length(value: Any) -> int | None:
    return len(value) if isinstance(value, str | bytes | list | tuple) else None


def written_chars(value: Any, limit: int = MAX_WRITTEN_CHARS) -> int:
    """About how many characters `value` comes to as text (`str()`), counted until past `limit`.

    A walk over containers that stops once the count passes `limit`: its cost is bounded by
    the limit, whatever the value (a list holding itself a million times over included).
    """
    total, stack = 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str | bytes):
            total += len(item)
        elif isinstance(item, list | tuple | set | frozenset | dict):
            total += 2 + 2 * len(item)  # brackets and separators
            if total > limit:
                return total
            stack.extend(item.items() if isinstance(item, dict) else item)
        elif isinstance(item, int) and not isinstance(item, bool):
            total += item.bit_length() // 3 + 1  # at least its decimal digits
        else:
            total += 8  # a float, None, a date...: short as text
        if total > limit:
            return total
    return total


def _refuse_long(what: str, size: int, limit: int = MAX_WRITTEN_CHARS) -> None:
    if size > limit:
        raise SecurityError(f"{what} would be {size:,} characters, over the limit of {limit:,}")


def _check_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    for value in (*args, *kwargs.values()):
        if not isinstance(value, str | int | float | bool | type(None)):
            _refuse_long("an argument", written_chars(value))
        elif isinstance(value, str):
            _refuse_long("an argument", len(value))


def _int_arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str) -> int:
    value = args[index] if len(args) > index else kwargs.get(name, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _str_arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str) -> str:
    value = args[index] if len(args) > index else kwargs.get(name, "")
    return value if isinstance(value, str) else str(value) if isinstance(value, int) else ""


def _replaced_size(text: str, old: str, new: str, count: int = -1) -> int:
    """The length of `text.replace(old, new, count)`, computed without building it."""
    found = text.count(old) if old else len(text) + 1
    if count >= 0:
        found = min(found, count)
    return len(text) + found * (len(new) - len(old))


def _joined_size(separator: Any, items: Any) -> int:
    values = list(items) if not isinstance(items, list | tuple) else items
    sizes = written_chars(values)
    return sizes + written_chars(separator) * max(len(values) - 1, 0)


def _grown_by_method(
    receiver: str | bytes, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> int:
    """What a string method returns, in characters (0: a method that does not grow)."""
    size = len(receiver)
    if name in ("ljust", "rjust", "center", "zfill"):
        return max(size, _int_arg(args, kwargs, 0, "width"))
    if name == "expandtabs":
        tab = b"\t" if isinstance(receiver, bytes) else "\t"
        return size + receiver.count(tab) * max(_int_arg(args, kwargs, 0, "tabsize") or 8, 1)  # type: ignore[arg-type]
    if name == "replace" and isinstance(receiver, str) and len(args) >= 2:
        old, new = str(args[0]), str(args[1])
        count = args[2] if len(args) > 2 and isinstance(args[2], int) else kwargs.get("count", -1)
        return _replaced_size(receiver, old, new, count if isinstance(count, int) else -1)
    if name == "join" and args:
        return _joined_size(receiver, args[0])
    if name == "translate" and args and isinstance(args[0], dict):
        longest = max((written_chars(v) for v in args[0].values()), default=1)
        return size * max(longest, 1)
    return 0


class _LimitedCodeGenerator(CodeGenerator):
    """Jinja's code generator, with `~` (string concatenation) sent through the sandbox."""

    def visit_Concat(self, node: Concat, frame: Frame) -> None:
        self.write("environment.checked_concat(context, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class LimitedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox with every C-level growth checked (see the module docstring)."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _LimitedCodeGenerator

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=_checked_output, **options)
        self.globals["range"] = self._range
        self.globals["lipsum"] = _bounded_lipsum(cast(Callable[..., Any], self.globals["lipsum"]))
        for name in ("center", "indent", "wordwrap", "truncate", "batch", "slice"):
            self.filters[name] = _bounded_widths(self.filters[name])
        self.filters["format"] = _checked_format(self.filters["format"])
        self.filters["join"] = _checked_join(self.filters["join"])
        for name, grows in FILTER_RESULTS.items():
            self.filters[name] = _checked_result(self.filters[name], name, grows)
        for name, filter_ in list(self.filters.items()):
            self.filters[name] = _checked_filter_arguments(filter_)
        self._range_budget = threading.local()

    def checked_concat(self, context: Any, values: tuple[Any, ...]) -> str:
        """`a ~ b`, refused when the result would be over the limit."""
        _refuse_long("a concatenation", sum(written_chars(value) for value in values))
        join = markup_join if context.eval_ctx.autoescape else str_join
        return join(values)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        """Any call in a template: its arguments and, for string methods, its result bounded."""
        _check_arguments(args, kwargs)
        receiver = getattr(__obj, "__self__", None)
        if isinstance(receiver, str | bytes):
            name = getattr(__obj, "__name__", "")
            if name == "join" and args and not isinstance(args[0], list | tuple | str):
                args = (list(args[0]), *args[1:])  # listed in Python, so it can be counted
            _refuse_long(f"str.{name}", _grown_by_method(receiver, name, args, kwargs))
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for value, times in ((left, right), (right, left)):
                size = _length(value)
                if size is not None and isinstance(times, int) and size * times > MAX_VALUE_LENGTH:
                    raise SecurityError(f"a value of {size * times:,} items is over the limit")
                if size is not None and isinstance(times, int) and times > 1:
                    _refuse_long("a repetition", written_chars(value) * times)
        elif operator == "**":
            ints = isinstance(left, int) and isinstance(right, int) and abs(left) > 1
            if ints and right > 0 and right * abs(left).bit_length() > MAX_EXPONENT_BITS:
                raise SecurityError("an integer power over the limit")
        elif operator == "%" and isinstance(left, str):
            check_printf_widths(left)
            # A mapping's value can be named any number of times: "%(a)s%(a)s..." % {"a": ...}
            uses = max(left.count("%("), 1) if isinstance(right, dict) else 1
            _refuse_long("a %-format", len(left) + uses * written_chars(right))
        elif operator == "+":
            sizes = [size for size in (_length(left), _length(right)) if size is not None]
            if len(sizes) == 2 and sum(sizes) > MAX_VALUE_LENGTH:  # both sides have a length
                raise SecurityError("a concatenation over the size limit")
            if len(sizes) == 2:
                _refuse_long("a concatenation", written_chars(left) + written_chars(right))
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """`str.format` in templates, refusing widths over the limit (a C call: no watchdog)."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        template = getattr(value, "__self__", "")

        def checked(*args: Any, **kwargs: Any) -> str:
            check_format_widths(str(template))
            # Each replacement field may name the same argument: "{0}{0}{0}...".format(...)
            fields = str(template).count("{")
            largest = max((written_chars(v) for v in (*args, *kwargs.values())), default=0)
            _refuse_long("a str.format", len(str(template)) + fields * largest)
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


def _checked_output(value: Any) -> Any:
    """Every value written to the output, before it is turned into text."""
    if not isinstance(value, str):
        _refuse_long("an output value", written_chars(value))
    return value


def _checked_filter_arguments(filter_: Callable[..., Any]) -> Callable[..., Any]:
    def checked(*args: Any, **kwargs: Any) -> Any:
        _check_arguments(args, kwargs)
        return filter_(*args, **kwargs)

    checked.__dict__.update(getattr(filter_, "__dict__", {}))
    return checked


def _checked_join(filter_: Callable[..., Any]) -> Callable[..., Any]:
    """do_join(eval_ctx, value, d="", attribute=None), refused when its result is too long.

    A range or a generator is listed first (in Python, where the watchdog reaches), so its
    items can be counted; the filter then joins that list.
    """

    def checked(eval_ctx: Any, value: Any, d: Any = "", attribute: Any = None) -> Any:
        items = value if isinstance(value, list | tuple | str) else list(value)
        _refuse_long("the join filter's result", _joined_size(d, items))
        return filter_(eval_ctx, items, d, attribute)

    checked.__dict__.update(getattr(filter_, "__dict__", {}))
    return checked


def _replace_result(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    # do_replace(eval_ctx, s, old, new, count=None)
    text, old, new = (str(a) for a in (*args[1:4], "", "", "")[:3])
    count = args[4] if len(args) > 4 else kwargs.get("count")
    return _replaced_size(text, old, new, count if isinstance(count, int) else -1)


def _indent_result(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    # do_indent(s, width=4, first=False, blank=False)
    text = str(args[0]) if args else ""
    width = args[1] if len(args) > 1 else kwargs.get("width", 4)
    prefix = width if isinstance(width, int) else len(str(width))
    return len(text) + prefix * (text.count("\n") + 1)


def _wordwrap_result(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    # do_wordwrap(environment, s, width=79, break_long_words=True, wrapstring=None, ...)
    text = str(args[1]) if len(args) > 1 else ""
    wrap = args[4] if len(args) > 4 else kwargs.get("wrapstring")
    return len(text) * (1 + len(wrap if isinstance(wrap, str) else "\n"))


def _sum_result(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    # do_sum(environment, iterable, attribute=None, start=0): summing lists copies them all
    # again at every step, in one C call: only numbers are summed.
    start = args[3] if len(args) > 3 else kwargs.get("start", 0)
    if not isinstance(start, int | float) or isinstance(start, bool):
        raise SecurityError("sum: only numbers are summed (lists are over the limit of one step)")
    return 0


FILTER_RESULTS: dict[str, Callable[[tuple[Any, ...], dict[str, Any]], int]] = {
    "replace": _replace_result,
    "indent": _indent_result,
    "wordwrap": _wordwrap_result,
    "sum": _sum_result,
}


def _checked_result(
    filter_: Callable[..., Any], name: str, grows: Callable[[tuple[Any, ...], dict[str, Any]], int]
) -> Callable[..., Any]:
    def checked(*args: Any, **kwargs: Any) -> Any:
        _refuse_long(f"the {name} filter's result", grows(args, kwargs))
        return filter_(*args, **kwargs)

    checked.__dict__.update(getattr(filter_, "__dict__", {}))
    return checked


def _bounded_lipsum(lipsum: Callable[..., Any]) -> Callable[..., Any]:
    def bounded(n: int = 5, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(n, int) or n > MAX_LIPSUM_PARAGRAPHS:
            raise SecurityError(
                f"lipsum: {n!r} paragraphs is over the limit of {MAX_LIPSUM_PARAGRAPHS}"
            )
        return lipsum(n, *args, **kwargs)

    return bounded


def _bounded_widths(filter_: Callable[..., Any]) -> Callable[..., Any]:
    def bounded(*args: Any, **kwargs: Any) -> Any:
        for value in (*args[1:], *kwargs.values()):
            if isinstance(value, int) and not isinstance(value, bool) and value > MAX_WIDTH:
                raise SecurityError(f"a width of {value:,} is over the limit of {MAX_WIDTH:,}")
        return filter_(*args, **kwargs)

    # Keep Jinja's pass_environment/pass_eval_context markers on the wrapper.
    bounded.__dict__.update(getattr(filter_, "__dict__", {}))
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

    checked.__dict__.update(getattr(filter_, "__dict__", {}))
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
