"""The circuit breaker's state machine, driven by a fake clock."""

from __future__ import annotations

import threading

import pytest

from app.auth.client import AuthUnavailable, CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=3, reset_timeout_s=30, clock=clock)


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        breaker.before_call()
        breaker.record_failure()


def test_starts_closed_and_lets_calls_through(breaker: CircuitBreaker) -> None:
    assert breaker.state == "closed"
    breaker.before_call()
    breaker.record_success()
    assert breaker.state == "closed"


def test_opens_at_the_threshold_and_fails_fast(breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    assert breaker.state == "closed"
    fail(breaker, 1)
    assert breaker.state == "open"
    with pytest.raises(AuthUnavailable, match="circuit open"):
        breaker.before_call()


def test_a_success_resets_the_failure_count(breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    breaker.before_call()
    breaker.record_success()
    fail(breaker, 2)
    assert breaker.state == "closed"


def test_stays_open_until_the_reset_timeout(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, 3)
    clock.now += 29.9
    assert breaker.state == "open"
    with pytest.raises(AuthUnavailable):
        breaker.before_call()
    clock.now += 0.1
    assert breaker.state == "half_open"


def test_half_open_lets_exactly_one_trial_through(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    fail(breaker, 3)
    clock.now += 30
    breaker.before_call()  # the trial
    assert breaker.state == "half_open"
    with pytest.raises(AuthUnavailable, match="circuit open"):
        breaker.before_call()  # others fail fast while it runs


def test_a_successful_trial_closes(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, 3)
    clock.now += 30
    breaker.before_call()
    breaker.record_success()
    assert breaker.state == "closed"
    fail(breaker, 2)  # the count started over
    assert breaker.state == "closed"


def test_a_failed_trial_reopens_for_a_full_timeout(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    fail(breaker, 3)
    clock.now += 45
    breaker.before_call()
    breaker.record_failure()  # one failure is enough in half-open
    assert breaker.state == "open"
    clock.now += 29
    with pytest.raises(AuthUnavailable):
        breaker.before_call()
    clock.now += 1
    assert breaker.state == "half_open"
    breaker.before_call()
    breaker.record_success()
    assert breaker.state == "closed"


def test_defaults() -> None:
    breaker = CircuitBreaker()
    assert (breaker.failure_threshold, breaker.reset_timeout_s) == (5, 30)
    fail(breaker, 4)
    assert breaker.state == "closed"
    fail(breaker, 1)
    assert breaker.state == "open"


def test_concurrent_half_open_admits_one_trial(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, 3)
    clock.now += 30
    admitted: list[int] = []
    start = threading.Barrier(16)

    def attempt(n: int) -> None:
        start.wait()
        try:
            breaker.before_call()
        except AuthUnavailable:
            return
        admitted.append(n)

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 1


def test_concurrent_failures_are_all_counted(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failure_threshold=801, clock=clock)

    def fail_many() -> None:
        for _ in range(100):
            breaker.record_failure()

    threads = [threading.Thread(target=fail_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert breaker.state == "closed"
    breaker.record_failure()
    assert breaker.state == "open"
