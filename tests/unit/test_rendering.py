"""Rendering: the sandbox holds, user text is escaped in HTML, subjects stay on one line."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.domain.rendering import SAMPLE_VARIABLES, TemplateInvalid, check_template, render

VARS = {**SAMPLE_VARIABLES, "content_value": "<script>alert('x')</script> & more"}


def _render(
    subject: str = "Hi {{ name }}",
    html: str = "<p>{{ content_value }}</p>",
    text: str = "{{ content_value }}",
    variables: dict[str, Any] | None = None,
):
    return render(subject=subject, body_html=html, body_text=text, variables=variables or VARS)


def test_user_text_is_escaped_in_html_and_literal_in_text() -> None:
    email = _render()
    assert "<script>" not in email.html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more" in email.html
    assert email.text == "<script>alert('x')</script> & more"


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ name.__class__.__base__.__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{% for c in ''.__class__.__mro__[1].__subclasses__() %}{{ c }}{% endfor %}",
    ],
)
def test_sandbox_escapes_are_refused(source: str) -> None:
    with pytest.raises(TemplateInvalid):
        _render(html=source)
    with pytest.raises(TemplateInvalid):
        check_template("s", source, "t")


@pytest.mark.parametrize("subject", ["Hi\nBcc: victim@example.com", "{{ name }}\r\nX-Evil: 1"])
def test_a_line_break_in_the_subject_is_refused(subject: str) -> None:
    with pytest.raises(TemplateInvalid, match="single line"):
        _render(subject=subject)


def test_a_variable_that_renders_a_line_break_is_refused_too() -> None:
    with pytest.raises(TemplateInvalid, match="single line"):
        _render(subject="Hi {{ name }}", variables={**VARS, "name": "Ann\nBcc: x@y.z"})


def test_unknown_variables_are_errors_not_blanks() -> None:
    with pytest.raises(TemplateInvalid, match="UndefinedError"):
        _render(html="{{ nmae }}")


def test_syntax_errors_name_the_line() -> None:
    with pytest.raises(TemplateInvalid, match=r"syntax error \(line 2\)"):
        check_template("s", "<p>\n{% if %}</p>", "t")


def test_empty_subject_is_refused() -> None:
    with pytest.raises(TemplateInvalid, match="empty"):
        _render(subject="{{ '' }}")


# Pieces of template source, put together in any order: most sequences are syntax errors, some
# compile and render, some nest past the parser or hold literals past Python's digit limit.
_PIECES = st.sampled_from(
    [
        "{{", "}}", "{%", "%}", "{#", "#}", " if ", " else ", " endif ", " for x in ",
        " endfor ", " set y = ", "name", "content_value", "count", "x", "y", "(", ")", "[",
        "]", "{", "}", ",", ":", "'a'", '"b"', "1", "9" * 5000, "|length", "|upper", "|join",
        "|safe", ".ljust(", ".__class__", "range(", "*", "**", "+", "%", "//", "~", "<p>", "\n",
    ]
)  # fmt: skip
template_sources = st.lists(_PIECES, max_size=40).map("".join) | st.sampled_from(
    [
        "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}",
        "{% if x %}" * 3000 + "{% endif %}" * 3000,
        "{{ " + "[" * 3000 + "]" * 3000 + " }}",
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(html=template_sources, subject=template_sources)
def test_any_template_source_renders_or_is_a_template_error(html: str, subject: str) -> None:
    try:
        email = render(
            subject=subject or "s", body_html=html, body_text="t", variables=SAMPLE_VARIABLES
        )
    except TemplateInvalid as exc:
        assert str(exc)  # a reason for the operator, and nothing else escapes
    else:
        assert email.subject and "\n" not in email.subject and email.html.strip()
