"""A real Faust worker process against real Kafka and PostgreSQL: mixed events, dead letters."""

from __future__ import annotations

import json
import random
import time
import uuid

from sqlalchemy import text

from app.db.session import session_scope
from harness.kafka import headers_of, produce, read_topic, value_of
from harness.stream import StreamEnv, event, like_counts_in_db, metrics_of
from harness.waiting import wait_for


def _rows(kind: str) -> dict[tuple[uuid.UUID, uuid.UUID | None], tuple[str, str, str]]:
    with session_scope() as session:
        rows = session.execute(
            text(
                "SELECT n.user_id, n.content_id, n.periodicity, m.content_value, t.name"
                " FROM notifications n JOIN messages m USING (message_id)"
                " JOIN templates t ON t.template_id = m.template_id WHERE n.kind = :kind"
            ),
            {"kind": kind},
        )
        return {(r.user_id, r.content_id): (r.periodicity, r.content_value, r.name) for r in rows}


def test_10k_mixed_events_land_exactly(stream_env: StreamEnv) -> None:
    rng = random.Random(5)
    s = stream_env
    likers = [uuid.uuid4() for _ in range(100)]
    like_keys = [(u, uuid.uuid4()) for u in likers for _ in range(3)]  # 300 keys
    campaigns = [uuid.uuid4() for _ in range(4)]
    recipients = [uuid.uuid4() for _ in range(100)]
    items: list[tuple[str, str, bytes]] = []
    expected_likes: dict[tuple[uuid.UUID, uuid.UUID], int] = {}
    expected_welcome: dict[tuple[uuid.UUID, None], tuple[str, str, str]] = {}
    expected_mail: dict[tuple[uuid.UUID, uuid.UUID], tuple[str, str, str]] = {}
    for i in range(10_000):
        roll = rng.random()
        if roll < 0.7:
            user, content = rng.choice(like_keys)
            expected_likes[(user, content)] = expected_likes.get((user, content), 0) + 1
            items.append((s.liked, str(user), event(user, content, "nice", "daily")))
        elif roll < 0.8:
            user = uuid.uuid4()
            link = f"https://auth.local/confirm/{i}"
            expected_welcome[(user, None)] = ("once", link, "welcome")
            items.append((s.registered, str(user), event(user, None, link, "once")))
        else:
            # 2,000 mailing events on 400 keys: most keys have their text replaced.
            user, campaign = rng.choice(recipients), rng.choice(campaigns)
            periodicity = rng.choice(["once", "daily", "weekly"])
            body = f"campaign text v{i}"
            expected_mail[(user, campaign)] = (periodicity, body, "mailing")
            items.append((s.mailing, str(user), event(user, campaign, body, periodicity)))
    worker = s.worker()
    worker.wait_ready()
    assert produce(s.settings, items) == 10_000

    wait_for(lambda: like_counts_in_db() == expected_likes, timeout=90, what="like counts")
    wait_for(lambda: _rows("welcome") == expected_welcome, timeout=30, what="welcome rows")
    wait_for(lambda: _rows("mailing") == expected_mail, timeout=30, what="mailing texts")
    assert len(expected_likes) > 250 and len(expected_mail) > 300

    # The web view agrees with PostgreSQL, key by key, per user, and in size. The table is set
    # after PostgreSQL's commit (changelog first, then the store), so the last batch's counts
    # may reach it a moment after the rows do.
    def disagreeing() -> dict[tuple[uuid.UUID, uuid.UUID], tuple[int, int]]:
        seen = {key: worker.get(f"/likes/{key[0]}/{key[1]}/")["count"] for key in expected_likes}
        return {k: (seen[k], n) for k, n in expected_likes.items() if seen[k] != n}

    deadline = time.monotonic() + 30
    while (lagging := disagreeing()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert lagging == {}, f"(web view, PostgreSQL) of {len(lagging)} keys"
    for user in likers[:10]:
        counts = worker.get(f"/likes/{user}/")["counts"]
        assert counts == {str(c): n for (u, c), n in expected_likes.items() if u == user}
    assert worker.get("/likes/")["size"] == len(expected_likes)
    unknown = worker.get(f"/likes/{uuid.uuid4()}/{uuid.uuid4()}/")
    assert unknown["count"] == 0 and unknown["found"] is False
    assert worker.starts == 1 and worker.alive()


MALFORMED_KINDS = ("not_json", "schema", "bad_uuid", "bad_periodicity", "too_large")


def _malformed(reason: str, i: int) -> bytes:
    good = json.loads(event(uuid.uuid4(), uuid.uuid4(), "https://x.example/1", "daily"))
    if reason == "not_json":
        return b"{not json " + str(i).encode()
    if reason == "schema":
        del good["content_value"]
    elif reason == "bad_uuid":
        good["user_id"] = f"user-{i}"
    elif reason == "bad_periodicity":
        good["periodicity"] = "hourly"
    elif reason == "too_large":
        good["content_value"] = "x" * 2_000  # MAX_EVENT_BYTES is 1024 for this worker
    return json.dumps(good).encode()


def test_malformed_events_go_to_the_dead_letter_topic(stream_env: StreamEnv) -> None:
    s = stream_env
    s.env["MAX_EVENT_BYTES"] = "1024"
    topics = [s.liked, s.mailing, s.registered]
    items: list[tuple[str, str, bytes]] = []
    bad: dict[bytes, str] = {}
    user, content = uuid.uuid4(), uuid.uuid4()
    for i in range(200):
        for n, reason in enumerate(MALFORMED_KINDS):
            value = _malformed(reason, i)
            topic = topics[(i + n) % 3]
            bad[value] = reason
            items.append((topic, str(uuid.uuid4()), value))
            # A valid like between malformed events: it must not be held up by them.
            items.append((s.liked, str(user), event(user, content, "ok", "weekly")))
    worker = s.worker()
    worker.wait_ready()
    produce(s.settings, items)

    wait_for(lambda: like_counts_in_db() == {(user, content): 1000}, timeout=60, what="likes")
    dead = read_topic(s.settings, s.dead_letter, expected=1000)
    seen: dict[str, int] = {}
    for msg in dead:
        headers = {k: v.decode() for k, v in headers_of(msg).items()}
        assert headers["reason"] == bad[value_of(msg)], headers
        assert headers["error"] and headers["source_topic"] in topics
        assert int(headers["source_partition"]) in range(4) and int(headers["source_offset"]) >= 0
        seen[headers["reason"]] = seen.get(headers["reason"], 0) + 1
    assert seen == dict.fromkeys(MALFORMED_KINDS, 200)
    metrics = metrics_of(worker)
    assert (
        sum(v for k, v in metrics.items() if k.startswith("notify_stream_dead_letters_total"))
        == 1000
    )
    # The agents kept going: same process, no crash or agent restart in its log.
    assert worker.alive() and worker.starts == 1
    log = worker.log_text()
    assert "Traceback" not in log and "crashed" not in log.lower(), log[-3000:]


def test_a_worker_with_an_empty_store_recovers_the_like_table_from_its_changelog(
    stream_env: StreamEnv,
) -> None:
    s = stream_env
    rng = random.Random(9)
    keys = [(uuid.uuid4(), uuid.uuid4()) for _ in range(400)]
    expected: dict[tuple[uuid.UUID, uuid.UUID], int] = {}
    items = []
    for _ in range(6_000):
        user, content = rng.choice(keys)
        expected[(user, content)] = expected.get((user, content), 0) + 1
        items.append((s.liked, str(user), event(user, content, "nice", "daily")))
    first = s.worker("first")
    first.wait_ready()
    assert produce(s.settings, items) == len(items)
    wait_for(lambda: like_counts_in_db() == expected, timeout=90, what="like counts")
    wait_for(lambda: first.get("/likes/")["size"] == len(expected), timeout=30, what="table")
    first.stop()

    # Same app id, a data directory of its own: every count comes back from the changelog.
    second = s.worker("second")
    second.wait_ready()
    # Served once recovery is done (a view may answer from a half-recovered table before that).
    wait_for(lambda: second.get("/likes/")["size"] == len(expected), timeout=60, what="recovery")
    for (user, content), count in expected.items():
        assert second.get(f"/likes/{user}/{content}/")["count"] == count
    assert second.get("/likes/")["size"] == len(expected)
