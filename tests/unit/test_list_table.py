"""The portal's list-table macro: the headers, a row per item from the caller, a line when empty."""

from __future__ import annotations

from jinja2 import Environment, FileSystemLoader, select_autoescape

from app.config import REPO_ROOT

PAGE = """{% from "portal/tables.html" import list_table %}
{%- call(item) list_table(["Name", "Count"], items, empty, id="things") -%}
<tr><td>{{ item.name }}</td><td>{{ item.count }}</td></tr>
{%- endcall %}"""


def render(items: list[dict[str, object]], empty: object = "Nothing yet.") -> str:
    env = Environment(
        loader=FileSystemLoader(REPO_ROOT / "app/portal/templates"),
        autoescape=select_autoescape(default=True),
    )
    return env.from_string(PAGE).render(items=items, empty=empty)


def test_a_row_per_item_under_the_headers() -> None:
    html = render([{"name": "a<b", "count": 1}, {"name": "c", "count": 2}])
    assert '<table class="table card-table table-vcenter" id="things">' in html
    assert "<thead><tr><th>Name</th><th>Count</th></tr></thead>" in html
    assert "<tr><td>a&lt;b</td><td>1</td></tr>" in html  # the caller's cells stay escaped
    assert "<tr><td>c</td><td>2</td></tr>" in html
    assert "Nothing yet." not in html


def test_an_empty_list_spans_every_column_with_its_line() -> None:
    html = render([], empty="No <code>x</code> yet")
    assert '<td colspan="2" class="text-secondary">No &lt;code&gt;x&lt;/code&gt; yet</td>' in html
    assert "<tbody>" in html and "<td>" not in html
