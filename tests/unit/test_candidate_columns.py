"""Planning builds a Candidate from each row by position: the query and the dataclass agree."""

from __future__ import annotations

from dataclasses import fields

from app.db import jobs as store
from app.jobs.planning import Candidate


def test_the_candidate_query_selects_candidate_fields_in_their_order() -> None:
    assert store.CANDIDATE_FIELDS == tuple(f.name for f in fields(Candidate))


def test_every_candidate_field_is_selected_once() -> None:
    assert len(set(store.CANDIDATE_FIELDS)) == len(fields(Candidate))
