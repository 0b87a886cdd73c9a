"""The Auth client over real HTTP against the dev Auth server (and fakes of Auth misbehaving)."""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from app.auth.client import AuthClient, AuthContractError, AuthUnavailable, AuthUser
from app.auth.dev_server import DevAuthHandler, DevAuthServer, generate_users, make_server
from app.core.circuits import Circuit
from harness.waiting import server_url

TOKEN = "test-token"


class CountingSession(requests.Session):
    """A real session that counts the requests it sends, to prove the breaker skips the network."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        self.sent += 1
        return super().request(*args, **kwargs)


def start(server: DevAuthServer) -> tuple[DevAuthServer, str]:
    threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
    return server, server_url(server)


def stop(server: DevAuthServer) -> None:
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def users() -> list[dict[str, Any]]:
    return generate_users(700)


@pytest.fixture
def dev_auth(users: list[dict[str, Any]]) -> Iterator[tuple[DevAuthServer, str]]:
    server, url = start(make_server(users, token=TOKEN))
    yield server, url
    stop(server)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_client(sleeps: list[float]) -> Iterator[Callable[..., AuthClient]]:
    made: list[AuthClient] = []

    def make(url: str, token: str = TOKEN, **kwargs: Any) -> AuthClient:
        kwargs.setdefault("session", CountingSession())
        made.append(AuthClient(url, token, sleep=sleeps.append, **kwargs))
        return made[-1]

    yield make
    for client in made:
        client.close()


@pytest.fixture
def fake_auth(users: list[dict[str, Any]]) -> Iterator[Callable[..., str]]:
    """Start a fake Auth: the dev server behind scripted answers; returns its URL."""
    servers: list[DevAuthServer] = []

    def fake(script: list[tuple[int, dict[str, str], Any]]) -> str:
        # Each request takes the next scripted (status, headers, body); the dev server answers
        # once the script runs out.
        lock = threading.Lock()

        class Scripted(DevAuthHandler):
            def _scripted(self) -> bool:
                with lock:
                    if not script:
                        return False
                    status, headers, body = script.pop(0)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(data))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
                return True

            def do_GET(self) -> None:
                if not self._scripted():
                    super().do_GET()

            def do_POST(self) -> None:
                if not self._scripted():
                    super().do_POST()

        server, url = start(DevAuthServer(("127.0.0.1", 0), users, TOKEN, Scripted))
        servers.append(server)
        return url

    yield fake
    for server in servers:
        stop(server)


def test_get_user_found(dev_auth: tuple[DevAuthServer, str], make_client, users) -> None:
    raw = users[41]
    user = make_client(dev_auth[1]).get_user(uuid.UUID(raw["user_id"]))
    assert user == AuthUser(
        user_id=uuid.UUID(raw["user_id"]),
        email=raw["email"],
        name=raw["name"],
        timezone=raw["timezone"],
        policy=raw["notification_policy"],
    )


def test_get_user_unknown_is_none(dev_auth: tuple[DevAuthServer, str], make_client) -> None:
    client = make_client(dev_auth[1])
    assert client.get_user(uuid.uuid4()) is None
    assert client.circuit.state == "closed"


def test_get_users_chunks_by_500(dev_auth: tuple[DevAuthServer, str], make_client, users) -> None:
    server, url = dev_auth
    known = [uuid.UUID(raw["user_id"]) for raw in users]
    unknown = [uuid.UUID(int=n + 1) for n in range(500)]
    ids = known + unknown
    random.Random(3).shuffle(ids)
    client = make_client(url)

    found, missing, invalid = client.get_users(ids + ids[:50])  # duplicates are asked once

    assert server.batch_sizes == [500, 500, 200]
    assert server.request_count == 3
    assert client.session.sent == 3
    assert set(found) == set(known)
    assert missing == set(unknown) and invalid == {}
    assert all(found[user_id].user_id == user_id for user_id in found)


def test_get_users_of_nothing_asks_nothing(
    dev_auth: tuple[DevAuthServer, str], make_client
) -> None:
    assert make_client(dev_auth[1]).get_users([]) == ({}, set(), {})
    assert dev_auth[0].request_count == 0


def test_wrong_token_is_a_contract_error_without_retries(
    dev_auth: tuple[DevAuthServer, str], make_client, sleeps
) -> None:
    client = make_client(dev_auth[1], token="wrong")
    with pytest.raises(AuthContractError, match="401"):
        client.get_user(uuid.uuid4())
    with pytest.raises(AuthContractError, match="401"):
        client.get_users([uuid.uuid4()])
    assert dev_auth[0].request_count == 2
    assert sleeps == []
    assert client.circuit.state == "closed"  # Auth answered: a configuration problem


def test_outage_retries_then_opens_the_breaker_and_fails_fast(users, make_client, sleeps) -> None:
    server, url = start(make_server(users, token=TOKEN))
    stop(server)  # nothing listens there any more: connection refused
    breaker = Circuit("auth", failure_threshold=2, probe_interval_s=60)
    client = make_client(url, retries=2, circuit=breaker)

    for _ in range(2):
        with pytest.raises(AuthUnavailable, match="ConnectionError"):
            client.get_user(uuid.uuid4())
    assert client.session.sent == 6  # 2 calls x (1 try + 2 retries)
    assert len(sleeps) == 4
    assert breaker.state == "open"

    with pytest.raises(AuthUnavailable, match="circuit open"):
        client.get_users([uuid.uuid4()])
    assert client.session.sent == 6  # failed fast, no network
    assert len(sleeps) == 4


def test_a_retry_after_that_is_no_finite_number_is_slept_within_the_backoff(
    fake_auth, users
) -> None:
    # Auth's Retry-After goes to time.sleep: NaN once raised there and aborted the whole chunk.
    script = [(503, {"Retry-After": v}, None) for v in ("nan", "inf", "-inf", "1e400", "-3")]
    url = fake_auth(script)
    client = AuthClient(url, TOKEN, retries=5, backoff_base_s=0.05, backoff_max_s=0.2)
    try:
        found, _missing, _invalid = client.get_users([uuid.UUID(users[0]["user_id"])])
    finally:
        client.close()
    assert list(found) == [uuid.UUID(users[0]["user_id"])]


def test_5xx_then_ok_succeeds_after_backoff(
    fake_auth, make_client, sleeps, users, monkeypatch: pytest.MonkeyPatch
) -> None:
    bounds: list[tuple[float, float]] = []

    def top_of_range(low: float, high: float) -> float:
        bounds.append((low, high))
        return high

    # The client draws its jitter from the random module; take the top of each range.
    monkeypatch.setattr(random, "uniform", top_of_range)
    url = fake_auth([(503, {}, None), (502, {}, None), (500, {}, {"error": "boom"})])
    client = make_client(url, retries=3, backoff_base_s=0.2, backoff_max_s=0.5)

    found, missing, _invalid = client.get_users([uuid.UUID(users[0]["user_id"])])

    assert list(found) == [uuid.UUID(users[0]["user_id"])] and missing == set()
    # Full jitter: uniform(0, min(max, base * 2**attempt)); exponential, then capped.
    assert bounds == [(0.0, 0.2), (0.0, 0.4), (0.0, 0.5)]
    assert sleeps == [0.2, 0.4, 0.5]
    assert client.circuit.state == "closed"


def test_backoff_is_jittered_within_bounds(fake_auth, make_client, sleeps) -> None:
    url = fake_auth([(503, {}, None)] * 3)
    client = make_client(url, retries=3, backoff_base_s=0.1, backoff_max_s=0.3)
    assert client.get_user(uuid.uuid4()) is None
    caps = [0.1, 0.2, 0.3]
    assert len(sleeps) == 3
    assert all(0.0 <= delay <= cap for delay, cap in zip(sleeps, caps, strict=True))


def test_429_honours_retry_after_capped(fake_auth, make_client, sleeps) -> None:
    url = fake_auth([(429, {"Retry-After": "2"}, None), (429, {"Retry-After": "60"}, None)])
    client = make_client(url, backoff_max_s=5.0)
    assert client.get_user(uuid.uuid4()) is None
    assert sleeps == [2.0, 5.0]


def test_5xx_past_the_retries_is_one_breaker_failure(fake_auth, make_client, sleeps) -> None:
    url = fake_auth([(503, {}, None)] * 4)
    breaker = Circuit("auth", failure_threshold=2)
    client = make_client(url, retries=3, circuit=breaker)
    with pytest.raises(AuthUnavailable, match="HTTP 503 after 4 tries"):
        client.get_user(uuid.uuid4())
    assert len(sleeps) == 3
    assert breaker.state == "closed"  # four failed attempts, one failed call


@pytest.mark.parametrize(
    "body",
    [
        {"user_id": "not-a-uuid", "email": "a@example.com", "name": "A", "timezone": "UTC"},
        {"users": [], "missing": []},
        ["not", "an", "object"],
    ],
)
def test_schema_violating_user_is_a_contract_error(fake_auth, make_client, sleeps, body) -> None:
    client = make_client(fake_auth([(200, {}, body)]))
    with pytest.raises(AuthContractError, match="auth_user"):
        client.get_user(uuid.uuid4())
    assert sleeps == []
    assert client.circuit.state == "closed"


def test_a_record_out_of_contract_costs_only_its_user(fake_auth, make_client, users) -> None:
    bad_policy = dict(users[0], notification_policy={"email": "yes", "likes": True, "mailing": 1})
    bad_address = dict(users[1], email="not-an-address")
    good = users[2]
    answer = {"users": [bad_policy, bad_address, good, {"user_id": 7}], "missing": []}
    client = make_client(fake_auth([(200, {}, answer)]))
    ids = [uuid.UUID(u["user_id"]) for u in (bad_policy, bad_address, good)]

    found, missing, invalid = client.get_users(ids)

    assert list(found) == [ids[2]] and missing == set()
    assert set(invalid) == {ids[0], ids[1]}
    assert "notification_policy" in invalid[ids[0]] and "email must be email" in invalid[ids[1]]
    assert client.circuit.state == "closed"


def test_a_batch_answer_that_is_not_two_lists_is_a_contract_error(fake_auth, make_client) -> None:
    client = make_client(fake_auth([(200, {}, {"users": {}, "missing": []})]))
    with pytest.raises(AuthContractError, match="auth_users_batch"):
        client.get_users([uuid.uuid4()])


def test_non_json_answer_is_a_contract_error(fake_auth, make_client) -> None:
    client = make_client(fake_auth([(200, {"Content-Type": "text/html"}, None)]))
    with pytest.raises(AuthContractError):
        client.get_user(uuid.uuid4())


def test_an_id_neither_found_nor_missing_is_invalid_not_dropped(fake_auth, make_client) -> None:
    asked = uuid.uuid4()
    client = make_client(fake_auth([(200, {}, {"users": [], "missing": []})]))
    found, missing, invalid = client.get_users([asked])
    assert (found, missing) == ({}, set())
    assert "neither a record nor `missing`" in invalid[asked]


def test_dev_server_follows_the_contract(dev_auth: tuple[DevAuthServer, str], users) -> None:
    _, url = dev_auth
    auth = {"Authorization": f"Bearer {TOKEN}"}
    batch = f"{url}/api/v1/users/batch"
    with requests.Session() as http:
        assert http.get(f"{url}/health").json() == {"status": "ok", "users": 700}
        assert http.get(f"{url}/api/v1/users/{users[0]['user_id']}").status_code == 401
        assert http.get(f"{url}/api/v1/users/not-a-uuid", headers=auth).status_code == 404
        assert http.post(batch, json={"user_ids": []}).status_code == 401
        for bad in ({}, {"user_ids": "x"}, {"user_ids": ["x"]}, {"user_ids": [1]}):
            assert http.post(batch, json=bad, headers=auth).status_code == 400
        over = {"user_ids": [str(uuid.uuid4()) for _ in range(501)]}
        assert http.post(batch, json=over, headers=auth).status_code == 400
        answer = http.post(batch, json={"user_ids": [users[1]["user_id"]]}, headers=auth)
        assert answer.json() == {"users": [users[1]], "missing": []}


def test_generate_users_is_deterministic() -> None:
    first, again = generate_users(120), generate_users(120)
    assert first == again
    assert first[0]["name"] == "User 0001" and first[0]["email"] == "user0001@example.com"
    assert generate_users(3, seed=8)[0]["user_id"] != first[0]["user_id"]
    zones = {user["timezone"] for user in first}
    assert {"Asia/Kathmandu", "Pacific/Kiritimati", "Pacific/Pago_Pago", "UTC"} <= zones
    for flag in ("email", "likes", "mailing"):
        assert any(not user["notification_policy"][flag] for user in first)
