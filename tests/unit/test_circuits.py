"""The circuit's state machine, driven by a fake clock."""

from __future__ import annotations

import random
import threading

import pytest
from prometheus_client import REGISTRY

from app.core.circuits import Circuit, CircuitOpen, State


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def breaker(clock: FakeClock) -> Circuit:
    return Circuit("test", failure_threshold=3, probe_interval_s=30, clock=clock)


def state_of(breaker: Circuit) -> State:
    """Its state now: read through a call, as mypy keeps a property narrowed by an earlier assert
    across the calls that change it."""
    return breaker.state


def fail(breaker: Circuit, times: int) -> None:
    for _ in range(times):
        breaker.before_call()
        breaker.record_failure()


def test_starts_closed_and_lets_calls_through(breaker: Circuit) -> None:
    assert state_of(breaker) == "closed"
    breaker.before_call()
    breaker.record_success()
    assert state_of(breaker) == "closed"


def test_opens_at_the_threshold_and_fails_fast(breaker: Circuit) -> None:
    fail(breaker, 2)
    assert state_of(breaker) == "closed"
    fail(breaker, 1)
    assert state_of(breaker) == "open"
    with pytest.raises(CircuitOpen, match="circuit open"):
        breaker.before_call()


def test_a_success_resets_the_failure_count(breaker: Circuit) -> None:
    fail(breaker, 2)
    breaker.before_call()
    breaker.record_success()
    fail(breaker, 2)
    assert state_of(breaker) == "closed"


def test_stays_open_until_the_probe_interval(breaker: Circuit, clock: FakeClock) -> None:
    fail(breaker, 3)
    clock.now += 29.9
    assert state_of(breaker) == "open"
    with pytest.raises(CircuitOpen):
        breaker.before_call()
    clock.now += 0.1
    assert breaker.wait_s() == 0  # a probe is due: the next caller makes it
    breaker.before_call()
    assert state_of(breaker) == "half_open"


def test_half_open_lets_exactly_one_trial_through(breaker: Circuit, clock: FakeClock) -> None:
    fail(breaker, 3)
    clock.now += 30
    breaker.before_call()  # the trial
    assert state_of(breaker) == "half_open"
    with pytest.raises(CircuitOpen, match="circuit open"):
        breaker.before_call()  # others fail fast while it runs


def test_a_successful_trial_closes(breaker: Circuit, clock: FakeClock) -> None:
    fail(breaker, 3)
    clock.now += 30
    breaker.before_call()
    breaker.record_success()
    assert state_of(breaker) == "closed"
    fail(breaker, 2)  # the count started over
    assert state_of(breaker) == "closed"


def test_a_failed_trial_reopens_for_a_full_interval(breaker: Circuit, clock: FakeClock) -> None:
    fail(breaker, 3)
    clock.now += 45
    breaker.before_call()
    breaker.record_failure()  # one failure is enough in half-open
    assert state_of(breaker) == "open"
    clock.now += 29
    with pytest.raises(CircuitOpen):
        breaker.before_call()
    clock.now += 1
    breaker.before_call()
    assert state_of(breaker) == "half_open"
    breaker.record_success()
    assert state_of(breaker) == "closed"


def test_defaults() -> None:
    breaker = Circuit("test")
    assert (breaker.failure_threshold, breaker.probe_interval_s) == (5, 2.0)
    fail(breaker, 4)
    assert state_of(breaker) == "closed"
    fail(breaker, 1)
    assert state_of(breaker) == "open"


def test_concurrent_half_open_admits_one_trial(breaker: Circuit, clock: FakeClock) -> None:
    fail(breaker, 3)
    clock.now += 30
    admitted: list[int] = []
    start = threading.Barrier(16)

    def attempt(n: int) -> None:
        start.wait()
        try:
            breaker.before_call()
        except CircuitOpen:
            return
        admitted.append(n)

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 1


def test_concurrent_failures_are_all_counted(clock: FakeClock) -> None:
    breaker = Circuit("test", failure_threshold=801, clock=clock)

    def fail_many() -> None:
        for _ in range(100):
            breaker.record_failure()

    threads = [threading.Thread(target=fail_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert state_of(breaker) == "closed"
    breaker.record_failure()
    assert state_of(breaker) == "open"


def _gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value("notify_circuit_state", {"dependency": name})


def test_the_state_gauge_follows_open_half_open_closed(clock: FakeClock) -> None:
    circuit = Circuit("gauge-test", failure_threshold=2, probe_interval_s=2, clock=clock)
    assert _gauge("gauge-test") == 0
    fail(circuit, 2)
    assert _gauge("gauge-test") == 2
    clock.now += 2
    assert circuit.turn() == "probe"
    assert _gauge("gauge-test") == 1
    circuit.record_success()
    assert _gauge("gauge-test") == 0


def test_parked_work_comes_back_at_the_next_probe_spread_over_one_interval(
    breaker: Circuit, clock: FakeClock
) -> None:
    fail(breaker, 3)
    clock.now += 10
    rng = random.Random(1)
    countdowns = [breaker.park_countdown(rng) for _ in range(500)]
    assert min(countdowns) >= 20
    assert max(countdowns) <= 50
    # Spread: every tenth of the interval gets some of it.
    assert len({int((c - 20) // 3) for c in countdowns}) == 10


def test_failures_of_calls_started_before_it_opened_do_not_push_the_probe_back(
    breaker: Circuit, clock: FakeClock
) -> None:
    fail(breaker, 3)
    clock.now += 20
    for _ in range(10):
        breaker.record_failure()  # answers of calls that were in flight when it opened
    assert breaker.wait_s() == pytest.approx(10)


def test_a_probe_that_made_no_call_lets_the_next_caller_probe_at_once(
    breaker: Circuit, clock: FakeClock
) -> None:
    fail(breaker, 3)
    clock.now += 30
    assert breaker.turn() == "probe"
    assert breaker.turn() == "park"
    breaker.release_probe()
    assert state_of(breaker) == "open"
    assert breaker.wait_s() == 0
    assert breaker.turn() == "probe"


def test_a_probe_whose_caller_vanished_is_given_up_after_its_lease(clock: FakeClock) -> None:
    circuit = Circuit(
        "lease", failure_threshold=1, probe_interval_s=2, probe_lease_s=60, clock=clock
    )
    fail(circuit, 1)
    clock.now += 2
    assert circuit.turn() == "probe"  # and its thread is killed: no verdict ever comes
    clock.now += 59
    assert circuit.turn() == "park"
    clock.now += 1
    assert state_of(circuit) == "open"
    assert circuit.turn() == "probe"


def test_closed_means_call_and_nothing_waits(breaker: Circuit) -> None:
    assert breaker.turn() == "call"
    assert breaker.wait_s() == 0
