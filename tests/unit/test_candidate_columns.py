"""Planning builds a Candidate from each row by position: the query and the dataclass agree."""

from __future__ import annotations

from dataclasses import fields

from app.db import jobs as store
from app.jobs.digests import candidate_fields_of_rows
from app.jobs.planning import Candidate


def test_the_candidate_query_gives_candidate_fields_in_their_order() -> None:
    assert candidate_fields_of_rows() == tuple(f.name for f in fields(Candidate))


def test_the_template_comes_as_its_id_and_every_column_once() -> None:
    assert "template_id" in store.CANDIDATE_FIELDS
    assert "body_html" not in store.CANDIDATE_FIELDS
    assert len(set(store.CANDIDATE_FIELDS)) == len(store.CANDIDATE_FIELDS)
