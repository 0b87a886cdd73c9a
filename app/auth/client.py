"""Client of the Auth service internal API: timeouts, retries with backoff, behind a circuit.

The circuit is the process's one circuit for Auth (app/core/circuits.py): while it is open a
call fails fast with AuthUnavailable, which the jobs treat as an outage to park behind.

The batching, retries, circuit and halving of an unreadable answer are one contract with Auth
and are read together.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import requests
from requests.exceptions import ChunkedEncodingError

from app.auth.records import AuthUser as AuthUser
from app.auth.records import UnreadableAnswer, UnusableRecord, parse_answer, read_user
from app.contracts import AUTH_BATCH_LIMIT
from app.core import circuits, metrics
from app.core.circuits import Circuit, CircuitOpen
from app.domain.bounds import bounded_seconds

log = logging.getLogger(__name__)

# ChunkedEncodingError: the connection broke mid-answer, as transient as a reset.
_RETRY_ERRORS = (requests.ConnectionError, requests.Timeout, ChunkedEncodingError)


class AuthError(Exception):
    """Base of every Auth client error."""


class AuthUnavailable(AuthError):
    """Auth is down or unreachable; leave the work for later, never drop it."""


class AuthContractError(AuthError):
    """Auth answered outside the contract (bad schema, 401/403/4xx): a configuration problem."""


class UserLookup(NamedTuple):
    """The answer for a set of ids: users found, ids Auth does not know, unusable records."""

    found: dict[uuid.UUID, AuthUser]
    missing: set[uuid.UUID]
    invalid: dict[uuid.UUID, str]  # id -> why its record cannot be used


def _uuid_of(raw: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw) if isinstance(raw, str) else None
    except ValueError:
        return None


class AuthClient:
    """The Auth internal API over one pooled `requests.Session`."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout_s: float = 5.0,
        retries: int = 3,
        backoff_base_s: float = 0.2,
        backoff_max_s: float = 5.0,
        circuit: Circuit | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.circuit = circuit or Circuit("auth")
        self.session = session or requests.Session()
        self._sleep = sleep
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    @classmethod
    def from_settings(cls, settings: Any) -> AuthClient:
        """A client configured from the service settings."""
        return cls(
            settings.auth_api_url,
            settings.auth_api_token.get_secret_value(),
            timeout_s=settings.auth_api_timeout_s,
            circuit=circuits.shared(
                "auth",
                failure_threshold=settings.circuit_failure_threshold,
                probe_interval_s=settings.circuit_probe_interval_s,
            ),
        )

    def close(self) -> None:
        """Close the pooled connections."""
        self.session.close()

    def get_user(self, user_id: uuid.UUID) -> AuthUser | None:
        """The user, or None when Auth does not know them (404)."""
        response = self._call("GET", f"/api/v1/users/{user_id}")
        if response.status_code == 404:
            return None
        user = self._user(response)
        if user.user_id != user_id:
            raise AuthContractError(f"asked for user {user_id}, got {user.user_id}")
        return user

    def get_users(self, user_ids: Iterable[uuid.UUID]) -> UserLookup:
        """Found, missing and invalid users for the ids, asked in batches of AUTH_BATCH_LIMIT.

        A record that breaks the contract costs only its own user: it is left out of `found`
        and named in `invalid` with the reason, so the rest of the batch goes on. Only an answer
        whose envelope is wrong (not an object of two lists) fails the whole call.
        """
        ids = list(dict.fromkeys(user_ids))
        lookup = UserLookup({}, set(), {})
        for start in range(0, len(ids), AUTH_BATCH_LIMIT):
            self._look_up(ids[start : start + AUTH_BATCH_LIMIT], lookup)
        if lookup.invalid:
            self._observe("invalid_record")
            log.warning(
                "auth batch: %d records out of contract, e.g. %s",
                len(lookup.invalid),
                next(iter(lookup.invalid.values())),
            )
        return lookup

    def _look_up(self, chunk: list[uuid.UUID], lookup: UserLookup) -> None:
        """Ask for one chunk; an answer one record made unreadable is asked again in halves.

        Down to a single id, whose record is then the unusable one: one bad record in 500
        costs about 2 * log2(500) = 18 more requests, and nobody else's mail.
        """
        body = {"user_ids": [str(user_id) for user_id in chunk]}
        response = self._call("POST", "/api/v1/users/batch", json=body)
        if response.status_code != 200:
            raise AuthContractError(f"batch: unexpected HTTP {response.status_code}")
        try:
            answer = self._envelope(response)
        except UnreadableAnswer as exc:
            if len(chunk) == 1:
                lookup.invalid[chunk[0]] = f"auth_users_batch: {exc}"
                return
            half = len(chunk) // 2
            self._look_up(chunk[:half], lookup)
            self._look_up(chunk[half:], lookup)
            return
        self._read_batch(answer, set(chunk), lookup)

    @staticmethod
    def _envelope(response: requests.Response) -> dict[str, list[Any]]:
        try:
            answer = parse_answer(response.content)
        except json.JSONDecodeError as exc:
            raise AuthContractError(f"auth_users_batch: {exc}") from exc
        if not (
            isinstance(answer, dict)
            and isinstance(answer.get("users"), list)
            and isinstance(answer.get("missing"), list)
        ):
            raise AuthContractError("auth_users_batch: not an object with lists users, missing")
        return answer

    def _read_batch(
        self, answer: dict[str, list[Any]], asked: set[uuid.UUID], lookup: UserLookup
    ) -> None:
        for raw in answer["users"]:
            user_id = _uuid_of(raw.get("user_id") if isinstance(raw, dict) else None)
            if user_id not in asked:
                continue  # not ours to judge: an id we did not ask for, or none at all
            try:
                lookup.found[user_id] = read_user(raw)
            except UnusableRecord as exc:
                lookup.invalid[user_id] = str(exc)
        for raw in answer["missing"]:
            user_id = _uuid_of(raw)
            if user_id in asked and user_id not in lookup.found:
                lookup.missing.add(user_id)
        # An id in neither list would otherwise be skipped silently, i.e. its mail dropped.
        for user_id in asked - lookup.found.keys() - lookup.missing - lookup.invalid.keys():
            lookup.invalid[user_id] = "Auth answered neither a record nor `missing` for this id"

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One call through the circuit: 200 or 404, else AuthContractError/AuthUnavailable."""
        try:
            self.circuit.before_call()
        except CircuitOpen as exc:
            self._observe("circuit_open")
            raise AuthUnavailable(str(exc)) from exc
        try:
            response = self._send(method, path, **kwargs)
        except AuthContractError:
            self.circuit.record_success()  # Auth answered: not an outage
            self._observe("contract_error")
            raise
        except BaseException:
            self.circuit.record_failure()
            self._observe("unavailable")
            raise
        self.circuit.record_success()
        self._observe("ok" if response.status_code == 200 else "not_found")
        return response

    def _observe(self, result: str) -> None:
        metrics.AUTH_CALLS.labels(result).inc()

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send with retries on outages; return a 200 or 404 answer."""
        url = self.base_url + path
        attempt = 0
        while True:
            retry_after = None
            try:
                response = self.session.request(
                    method, url, headers=self._headers, timeout=self.timeout_s, **kwargs
                )
            except _RETRY_ERRORS as exc:
                problem = f"{type(exc).__name__}: {exc}"
            except requests.RequestException as exc:  # a malformed URL and the like
                raise AuthContractError(f"{method} {path}: {exc}") from exc
            else:
                status = response.status_code
                if status in (200, 404):
                    return response
                if status < 500 and status != 429:
                    raise AuthContractError(f"{method} {path}: HTTP {status} {response.text[:80]}")
                problem = f"HTTP {status}"
                retry_after = response.headers.get("Retry-After")
            if attempt >= self.retries:
                raise AuthUnavailable(f"{method} {path}: {problem} after {attempt + 1} tries")
            log.info("auth %s %s: %s, retrying", method, path, problem)
            self._sleep(self._backoff(attempt, retry_after))
            attempt += 1

    def _backoff(self, attempt: int, retry_after: str | None = None) -> float:
        """Full jitter over base * 2**attempt, capped; a numeric Retry-After wins (capped).

        Retry-After is Auth's value: NaN, infinities, negatives and HTTP dates are bounded or
        ignored before they reach `sleep`.
        """
        asked = bounded_seconds(retry_after, maximum=self.backoff_max_s)
        if asked is not None:
            return asked
        return random.uniform(0.0, min(self.backoff_max_s, self.backoff_base_s * 2**attempt))

    @staticmethod
    def _user(response: requests.Response) -> AuthUser:
        try:
            return read_user(parse_answer(response.content))
        except ValueError as exc:  # JSONDecodeError, UnreadableAnswer and UnusableRecord
            raise AuthContractError(str(exc)) from exc
