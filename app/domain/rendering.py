"""Render e-mail templates: sandboxed Jinja, HTML autoescape, strict variables, 1-line subject."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError

from app.domain.render_limits import LimitedSandbox, capped
from app.domain.render_watchdog import RENDER_TIME_BUDGET_S, WATCHDOG, RenderTimeout

# Variables a template may use; per-kind extras (e.g. `count`) come on top.
SAMPLE_VARIABLES: Mapping[str, Any] = {
    "name": "Ann Example",
    "email": "ann@example.com",
    "content_value": "Sample text <b>with markup</b>",
    "content_id": "9b2e7c4d-1a2b-4c3d-9e8f-7a6b5c4d3e2f",
    "unsubscribe_url": "https://notify.example.com/unsubscribe?token=sample",
    "preferences_url": "https://notify.example.com/preferences?token=sample",
    "count": 3,
}


class TemplateInvalid(ValueError):
    """A template that does not compile, escapes the sandbox, or renders a bad subject."""


@dataclass(frozen=True, slots=True)
class Email:
    """A rendered e-mail, ready for a backend to send."""

    subject: str
    html: str
    text: str


@lru_cache(maxsize=2)
def _environment(html: bool) -> LimitedSandbox:
    # content_value may come from users: escape it in HTML; text parts stay literal.
    return LimitedSandbox(autoescape=html, undefined=StrictUndefined, keep_trailing_newline=True)


@lru_cache(maxsize=512)
def _compile(source: str, html: bool) -> Template:
    """Compile once per distinct source (compiling costs far more than rendering)."""
    try:
        template = _environment(html).from_string(source)
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        where = f" (line {line})" if line else ""
        raise TemplateInvalid(f"template syntax error{where}: {exc.message}") from exc
    except Exception as exc:  # noqa: BLE001 - whatever a source makes the compiler raise is its own
        # Nesting past the parser's recursion limit (RecursionError), a literal over Python's
        # digit limit (ValueError), code Python's own compiler refuses (SystemError, MemoryError).
        raise TemplateInvalid(
            f"template cannot be compiled: {type(exc).__name__}: {exc}"[:2000]
        ) from exc
    # Jinja copies the globals into every render's context; from its ChainMap that copy was a
    # sixth of planning a mail, from a plain dict it is one C call. Nothing adds globals later.
    template.globals = dict(template.globals)
    return template


def _render_part(template: Template, variables: Mapping[str, Any], part: str) -> str:
    try:
        return capped(template.generate(variables))
    except RenderTimeout:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a template raises is its own fault
        # SecurityError (sandbox, limits), UndefinedError, ZeroDivisionError, RecursionError...
        raise TemplateInvalid(f"{part}: {type(exc).__name__}: {exc}"[:2000]) from exc


def render(*, subject: str, body_html: str, body_text: str, variables: Mapping[str, Any]) -> Email:
    """Render the three parts within the limits; the subject must be one non-empty line.

    Raises TemplateInvalid, and nothing else, for anything the template or its data cause.
    """
    templates = (_compile(subject, False), _compile(body_html, True), _compile(body_text, False))
    _environment(False).reset_budget()
    _environment(True).reset_budget()
    try:
        parts = WATCHDOG.run_within(
            RENDER_TIME_BUDGET_S,
            lambda: [
                _render_part(t, variables, part)
                for t, part in zip(templates, ("subject", "HTML body", "text body"), strict=True)
            ],
        )
    except RenderTimeout as exc:
        raise TemplateInvalid(f"rendering took longer than {RENDER_TIME_BUDGET_S:g} s") from exc
    rendered_subject = parts[0].strip()
    if "\r" in rendered_subject or "\n" in rendered_subject:
        raise TemplateInvalid("subject: must be a single line (no line breaks)")
    if not rendered_subject:
        raise TemplateInvalid("subject: renders empty")
    if not parts[1].strip():
        raise TemplateInvalid("HTML body: renders empty")
    return Email(subject=rendered_subject, html=parts[1], text=parts[2])


# Data real users send: nothing, a lot, none of it; and recipients other than the sample one
# (a template whose cost depends on who receives it must fail here, not in the jobs worker).
ADVERSARIAL_VARIABLES: tuple[Mapping[str, Any], ...] = (
    {**SAMPLE_VARIABLES, "name": "", "content_value": "", "content_id": "", "count": 0},
    {**SAMPLE_VARIABLES, "name": "N" * 100, "content_value": "<x>&" * 2_500, "count": 10**6},
    {**SAMPLE_VARIABLES, "name": "Zoë Ødegård", "email": "zoe@example.org", "count": 1},
    {
        **SAMPLE_VARIABLES,
        "name": "李小龍",
        "email": "x" * 64 + "@" + "d" * 60 + ".example",
        "content_value": "x",
        "count": 2,
    },
)


def check_template(
    subject: str, body_html: str, body_text: str, variables: Mapping[str, Any] = SAMPLE_VARIABLES
) -> Email:
    """Compile and render with sample variables, then with hostile ones (empty, long, zero).

    Raises TemplateInvalid with a readable reason; returns the sample rendering.
    """
    email = render(subject=subject, body_html=body_html, body_text=body_text, variables=variables)
    for hostile in ADVERSARIAL_VARIABLES:
        try:
            render(subject=subject, body_html=body_html, body_text=body_text, variables=hostile)
        except TemplateInvalid as exc:
            raise TemplateInvalid(f"with {_describe(hostile)}: {exc}") from exc
    return email


def _describe(variables: Mapping[str, Any]) -> str:
    shown = []
    for name in ("name", "email", "content_value", "count"):
        value = variables[name]
        text = str(value)
        shown.append(f"{name}={value!r}" if len(text) < 20 else f"{name}=<{len(text)} chars>")
    return ", ".join(shown)
