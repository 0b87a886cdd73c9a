"""Render e-mail templates: sandboxed Jinja, HTML autoescape, strict variables, 1-line subject."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment

# Variables a template may use; per-kind extras (e.g. `count`) come on top.
SAMPLE_VARIABLES: Mapping[str, Any] = {
    "name": "Ann Example",
    "email": "ann@example.com",
    "content_value": "Sample text <b>with markup</b>",
    "content_id": "9b2e7c4d-1a2b-4c3d-9e8f-7a6b5c4d3e2f",
    "unsubscribe_url": "https://notify.example.com/unsubscribe?token=sample",
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
def _environment(html: bool) -> SandboxedEnvironment:
    # content_value may come from users: escape it in HTML; text parts stay literal.
    return SandboxedEnvironment(
        autoescape=html, undefined=StrictUndefined, keep_trailing_newline=True
    )


@lru_cache(maxsize=512)
def _compile(source: str, html: bool) -> Template:
    """Compile once per distinct source (compiling costs far more than rendering)."""
    try:
        return _environment(html).from_string(source)
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        where = f" (line {line})" if line else ""
        raise TemplateInvalid(f"template syntax error{where}: {exc.message}") from exc


def _render_part(source: str, html: bool, variables: Mapping[str, Any], part: str) -> str:
    template = _compile(source, html)
    try:
        return template.render(variables)
    except TemplateError as exc:  # SecurityError and UndefinedError are TemplateErrors
        raise TemplateInvalid(f"{part}: {type(exc).__name__}: {exc}") from exc


def render(*, subject: str, body_html: str, body_text: str, variables: Mapping[str, Any]) -> Email:
    """Render the three parts; the subject must come out as one non-empty line."""
    rendered_subject = _render_part(subject, False, variables, "subject").strip()
    if "\r" in rendered_subject or "\n" in rendered_subject:
        raise TemplateInvalid("subject: must be a single line (no line breaks)")
    if not rendered_subject:
        raise TemplateInvalid("subject: renders empty")
    return Email(
        subject=rendered_subject,
        html=_render_part(body_html, True, variables, "HTML body"),
        text=_render_part(body_text, False, variables, "text body"),
    )


def check_template(
    subject: str, body_html: str, body_text: str, variables: Mapping[str, Any] = SAMPLE_VARIABLES
) -> Email:
    """Compile and render with sample variables; raise TemplateInvalid with a readable reason."""
    return render(subject=subject, body_html=body_html, body_text=body_text, variables=variables)
