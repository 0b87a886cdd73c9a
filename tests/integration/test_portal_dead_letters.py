"""Dead letters in the portal: listed with their reason, replayed once through a confirmed POST."""

from __future__ import annotations

import uuid

from confluent_kafka import Consumer
from fastapi.testclient import TestClient

from app.config import Settings
from app.db import dead_letters
from app.db.dead_letters import REPLAY_HEADER, NewDeadLetter
from app.db.session import session_scope
from app.kafka.connection import client_config
from harness.kafka import headers_of
from harness.portal import form_token


def _letters(settings: Settings, topic: str, n: int) -> list[uuid.UUID]:
    tokens = [uuid.uuid4() for _ in range(n)]
    with session_scope() as session:
        dead_letters.record(
            session=session,
            group_id=settings.faust_app_id,
            letters=[
                NewDeadLetter(
                    topic,
                    i % 2,
                    100 + i,
                    f"k{i}".encode(),
                    b"<b>{bad %d" % i,
                    "missing_template",
                    "LookupError: no template named 'mailing'",
                    token,
                )
                for i, token in enumerate(tokens)
            ],
        )
    return tokens


def _ids() -> list[int]:
    with session_scope() as session:
        return [d.dead_letter_id for d in dead_letters.select(session=session, status=None)]


def _statuses() -> list[str]:
    with session_scope() as session:
        return [d.status for d in dead_letters.select(session=session, status=None)]


def _read(
    settings: Settings, topic: str, expected: int
) -> list[tuple[bytes | None, dict[str, bytes]]]:
    group = f"read-{uuid.uuid4().hex[:8]}"
    consumer = Consumer(
        {
            **client_config(settings),
            "group.id": group,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    got: list[tuple[bytes | None, dict[str, bytes]]] = []
    try:
        for _ in range(60):
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                got.append((message.value(), headers_of(message)))
            if len(got) == expected:
                return got
    finally:
        consumer.close()
    raise AssertionError(f"{len(got)} of {expected} replayed records on {topic}")


def test_dead_letters_are_listed_with_reason_and_an_escaped_preview(
    client: TestClient, mailing_topic: str, portal_settings: Settings
) -> None:
    _letters(portal_settings, mailing_topic, 3)
    page = client.get("/admin/dead-letter/list")
    assert page.status_code == 200
    assert "missing_template" in page.text and f"{mailing_topic}[0]@100" in page.text
    details = client.get(f"/admin/dead-letter/details/{_ids()[0]}")
    assert "&lt;b&gt;{bad" in details.text and "<b>{bad" not in details.text
    filtered = client.get("/admin/dead-letter/list", params={"status": "replayed"})
    assert f"{mailing_topic}[0]@100" not in filtered.text


def test_replay_needs_a_confirmed_post_and_publishes_each_letter_once(
    client: TestClient, mailing_topic: str, portal_settings: Settings
) -> None:
    tokens = _letters(portal_settings, mailing_topic, 4)
    ids = _ids()
    # SQLAdmin's list action is a GET: it only leads to the confirmation page.
    action = client.get(
        "/admin/dead-letter/action/replay",
        params={"pks": ",".join(map(str, ids))},
        follow_redirects=True,
    )
    assert action.status_code == 200 and "Replay 4 dead letters" in action.text
    assert _statuses() == ["dead"] * 4
    refused = client.post("/admin/dead-letters/replay", data={"ids": ",".join(map(str, ids))})
    assert refused.status_code == 403 and _statuses() == ["dead"] * 4

    token = form_token(client, f"/admin/dead-letters/replay?ids={ids[0]}")
    done = client.post(
        "/admin/dead-letters/replay", data={"ids": ",".join(map(str, ids)), "csrf_token": token}
    )
    assert done.status_code == 200 and "Replayed 4 dead letters" in done.text
    assert _statuses() == ["replayed"] * 4
    records = _read(portal_settings, mailing_topic, expected=4)
    assert {h[REPLAY_HEADER] for _v, h in records} == {str(t).encode() for t in tokens}
    # A second replay of the same selection publishes nothing.
    again = client.post(
        "/admin/dead-letters/replay", data={"ids": ",".join(map(str, ids)), "csrf_token": token}
    )
    assert "Replayed 0 dead letters" in again.text and "Nothing left to replay" in again.text
