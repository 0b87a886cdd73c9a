"""Templates cannot eat the jobs worker: sizes, loops and time are bounded per render."""

from __future__ import annotations

import threading

import pytest

from app.domain.render_limits import RENDER_TIME_BUDGET_S
from app.domain.rendering import SAMPLE_VARIABLES, TemplateInvalid, check_template, render


def _html(body: str) -> str:
    return render(subject="s", body_html=body, body_text="t", variables=SAMPLE_VARIABLES).html


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("{{ 'a' * 10**10 }}", "items is over the limit"),
        ("{{ [0] * 10**9 }}", "items is over the limit"),
        ("{{ 7 ** 100000 }}", "integer power over the limit"),
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "over 100,000 iterations",
        ),
        ("{{ 'x'|center(999999999) }}", "width of 999,999,999"),
        ("{{ 'x'|indent(10**6) }}", "over the limit"),
        ("{{ '%0999999999d' % 1 }}", "%-format width"),
        ("{{ '%*d' % (10**6, 1) }}", "%-format width"),
        ("{{ '%099999d'|format(1) }}", "%-format width"),
        ("{{ '{:>999999999}'.format(1) }}", "format width"),
        ("{{ '{:{w}}'.format(1, w=5) }}", "format width"),
        ("{% set s = 'y' * 90000 %}{% for i in range(20) %}{{ s }}{% endfor %}", "output over"),
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
        ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(1) }}", "RecursionError"),
        ("{{ ''.__class__.__mro__ }}", "SecurityError"),
    ],
)
def test_a_costly_or_broken_template_is_refused_with_the_reason(body: str, why: str) -> None:
    with pytest.raises(TemplateInvalid, match="HTML body") as refused:
        _html(body)
    assert why in str(refused.value)


def test_work_no_operator_bounds_is_stopped_by_the_time_budget() -> None:
    nested = (
        "{% set x = [1] * 1000 %}{% for a in x %}{% for b in x %}{% for c in x %}"
        "{% endfor %}{% endfor %}{% endfor %}"
    )
    with pytest.raises(TemplateInvalid, match=f"longer than {RENDER_TIME_BUDGET_S:g} s"):
        _html(nested)
    # The interruption stays with that render: the thread renders normally right after.
    assert [_html("<b>{{ name }}</b>") for _ in range(200)][-1] == "<b>Ann Example</b>"


def test_renders_in_other_threads_are_not_interrupted_by_a_slow_one() -> None:
    results: list[str] = []
    slow = (
        "{% set x = [1] * 1000 %}{% for a in x %}{% for b in x %}{% for c in x %}"
        "{% endfor %}{% endfor %}{% endfor %}"
    )

    def fast() -> None:
        for _ in range(300):
            results.append(_html("{{ count }}"))

    threads = [threading.Thread(target=fast) for _ in range(3)]
    for thread in threads:
        thread.start()
    with pytest.raises(TemplateInvalid):
        _html(slow)
    for thread in threads:
        thread.join()
    assert results == ["3"] * 900


def test_normal_loops_and_values_stay_allowed() -> None:
    body = "{% for i in range(3) %}{{ i }}{% endfor %}{{ 'ab' * 3 }}{{ 2 ** 10 }}{{ '%5d' % 7 }}"
    assert _html(body) == "012ababab1024    7"


def test_the_save_check_renders_with_empty_long_and_zero_values() -> None:
    with pytest.raises(TemplateInvalid, match="count=0.*ZeroDivisionError"):
        check_template("s", "<p>{{ 100 // count }}</p>", "t")
    with pytest.raises(TemplateInvalid, match="name=''.*renders empty"):
        check_template("{{ name }}", "<p>x</p>", "t")
    check_template("Hi {{ name or 'there' }}", "<p>{{ content_value|truncate(80) }}</p>", "t")
