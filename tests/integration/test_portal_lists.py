"""Deliveries and notifications in the portal: search and filter by status, kind, user, period."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient

from app.db.session import session_scope
from harness.campaigns import simulate_deliveries
from harness.rows import Spec, insert_notifications


def _rows(client: TestClient, path: str, **params: str) -> str:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text[:300]
    return response.text


def _setup() -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    users = [uuid.uuid4() for _ in range(3)]
    specs = [
        Spec(users[0], "mailing", "once", uuid.uuid4()),
        Spec(users[1], "likes", "daily", uuid.uuid4(), like_count=2),
        Spec(users[2], "welcome", "once"),
    ]
    with session_scope() as session:
        nids = insert_notifications(session, specs)
    simulate_deliveries({nids[0]: "sent", nids[1]: "failed", nids[2]: "scheduled"})
    return users, nids


def test_deliveries_filter_by_status_kind_user_and_search(client: TestClient) -> None:
    users, _nids = _setup()
    path = "/admin/delivery/list"
    failed = _rows(client, path, status="failed")
    assert str(users[1]) in failed and str(users[0]) not in failed
    assert "550 mailbox unavailable" in failed  # the provider's answer is on the list
    mailing = _rows(client, path, kind="mailing")
    assert str(users[0]) in mailing and str(users[1]) not in mailing
    one_user = _rows(client, path, user=str(users[2]), user_op="equals")
    assert str(users[2]) in one_user and str(users[0]) not in one_user
    searched = _rows(client, path, search=str(users[1])[:13])
    assert str(users[1]) in searched and str(users[2]) not in searched
    period = _rows(client, path, period_key="once", period_key_op="equals")
    assert all(str(u) in period for u in users)
    assert str(users[0]) not in _rows(client, path, period_key="2020-W01", period_key_op="equals")


def test_notifications_filter_by_status_kind_and_user(client: TestClient) -> None:
    users, _nids = _setup()
    path = "/admin/notification/list"
    likes = _rows(client, path, kind="likes")
    assert str(users[1]) in likes and str(users[0]) not in likes
    one_user = _rows(client, path, user_id=str(users[0]), user_id_op="equals")
    assert str(users[0]) in one_user and str(users[1]) not in one_user
    assert str(users[2]) in _rows(client, path, periodicity="once", status="pending")
