"""One circuit per outside dependency, shared by every task of a process.

Closed while the dependency answers. `failure_threshold` outages in a row open it: from then on
work that needs the dependency is parked instead of calling it, and after every
`probe_interval_s` one call goes through as a probe (half-open). The probe's success closes the
circuit and parked work flows again; its failure opens it for another interval.

Parked work is handed back to the broker to come back when the next probe is due, spread over
one interval so the released work does not reach the dependency all at once. A parked task did
not call the dependency, so it never counts as an attempt: attempts are for faults of one unit
(one address, one record), outages only delay.

A probe whose caller never reports (a killed thread) is given up after `probe_lease_s`, so the
circuit cannot stay half-open for good.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Literal

from app.core import metrics

log = logging.getLogger(__name__)

State = Literal["closed", "open", "half_open"]
Turn = Literal["call", "probe", "park"]
# The value of notify_circuit_state for each state.
STATE_VALUES: dict[State, int] = {"closed": 0, "half_open": 1, "open": 2}

DEFAULT_THRESHOLD = 5
DEFAULT_PROBE_INTERVAL_S = 2.0
DEFAULT_PROBE_LEASE_S = 60.0
_spread = random.Random()


class CircuitOpen(Exception):
    """The dependency is out: the call was not made; try again in `wait_s`."""

    def __init__(self, name: str, wait_s: float) -> None:
        super().__init__(f"{name}: circuit open, next probe in {wait_s:.1f} s")
        self.wait_s = wait_s


class Circuit:
    """Closed, open after consecutive outages, half-open while one probe runs."""

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = DEFAULT_THRESHOLD,
        probe_interval_s: float = DEFAULT_PROBE_INTERVAL_S,
        probe_lease_s: float = DEFAULT_PROBE_LEASE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.probe_interval_s = probe_interval_s
        self.probe_lease_s = probe_lease_s
        self._clock = clock
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # notified when it closes or opens
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_started: float | None = None
        self._on_close: list[Callable[[], object]] = []
        self._publish("closed")

    @property
    def state(self) -> State:
        with self._lock:
            return self._state()

    def _state(self) -> State:
        if self._opened_at is None:
            return "closed"
        return "half_open" if self._probing() else "open"

    def _probing(self) -> bool:
        started = self._probe_started
        return started is not None and self._clock() - started < self.probe_lease_s

    def wait_s(self) -> float:
        """Seconds until the next probe may go (0 when closed or due now)."""
        with self._lock:
            return self._wait_s()

    def _wait_s(self) -> float:
        if self._opened_at is None:
            return 0.0
        if self._probing():
            return 0.0  # the probe out now decides, most likely well within one interval
        return max(self._opened_at + self.probe_interval_s - self._clock(), 0.0)

    def turn(self) -> Turn:
        """What the caller may do now: call (closed), be the probe, or park."""
        with self._lock:
            return self._turn()

    def _turn(self) -> Turn:
        if self._opened_at is None:
            return "call"
        if self._probing() or self._wait_s() > 0:
            return "park"
        self._probe_started = self._clock()
        self._publish("half_open")
        return "probe"

    def wait_for_turn(self, timeout_s: float) -> Turn:
        """Park here until the caller may call or probe; "park" if `timeout_s` passed first.

        A waiter is woken the moment the circuit closes, and when a probe is due: so work
        parked in a thread goes on at once when the dependency is back.
        """
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                turn = self._turn()
                left = deadline - time.monotonic()
                if turn != "park" or left <= 0:
                    return turn
                # While another probe is out, look again a few times per interval.
                self._changed.wait(min(left, self._wait_s() or self.probe_interval_s / 4))

    def when_closed(self, callback: Callable[[], object]) -> None:
        """Call `callback` (in the thread whose call closed it) each time the circuit closes."""
        with self._lock:
            self._on_close.append(callback)

    def before_call(self) -> None:
        """Raise CircuitOpen unless the call may go (closed, or as the probe)."""
        if self.turn() == "park":
            raise CircuitOpen(self.name, self.wait_s())

    def park_countdown(self, rng: random.Random | None = None) -> float:
        """When parked work should come back: at the next probe, spread over one interval."""
        return self.wait_s() + (rng or _spread).uniform(0.0, self.probe_interval_s)

    def record_success(self) -> None:
        """The dependency answered: close the circuit and forget past failures."""
        with self._lock:
            was_open = self._opened_at is not None
            self._failures = 0
            self._opened_at = self._probe_started = None
            if not was_open:
                return
            log.warning("%s is back: circuit closed", self.name)
            self._publish("closed")
            self._changed.notify_all()
            listeners = list(self._on_close)
        for callback in listeners:
            try:
                callback()
            except Exception:  # a listener must not fail the call that closed the circuit
                log.exception("%s: a listener of the circuit's closing failed", self.name)

    def record_failure(self) -> None:
        """Count one outage; open at the threshold, or again after a failed probe."""
        with self._lock:
            self._failures += 1
            probing = self._probe_started is not None
            if probing or (self._opened_at is None and self._failures >= self.failure_threshold):
                if not probing:
                    log.warning(
                        "%s: circuit open after %d outages in a row", self.name, self._failures
                    )
                    metrics.CIRCUIT_OPENED.labels(self.name).inc()
                self._opened_at = self._clock()
                self._probe_started = None
                self._publish("open")
                self._changed.notify_all()

    def release_probe(self) -> None:
        """The probe made no call after all (nothing to send): the next caller probes now."""
        with self._lock:
            if self._probe_started is None:
                return
            self._probe_started = None
            if self._opened_at is not None:
                self._opened_at = self._clock() - self.probe_interval_s
                self._publish("open")
                self._changed.notify_all()

    def _publish(self, state: State) -> None:
        metrics.CIRCUIT_STATE.labels(self.name).set(STATE_VALUES[state])


_shared: dict[str, Circuit] = {}
_shared_lock = threading.Lock()


def shared(
    name: str,
    *,
    failure_threshold: int = DEFAULT_THRESHOLD,
    probe_interval_s: float = DEFAULT_PROBE_INTERVAL_S,
) -> Circuit:
    """The process's circuit for a dependency, made on first use with these settings."""
    with _shared_lock:
        circuit = _shared.get(name)
        if circuit is None:
            circuit = Circuit(
                name, failure_threshold=failure_threshold, probe_interval_s=probe_interval_s
            )
            _shared[name] = circuit
        return circuit


def parked(name: str, count: int = 1) -> None:
    """Count work parked behind an open circuit (notify_circuit_parked_total)."""
    metrics.CIRCUIT_PARKED.labels(name).inc(count)


def forget_all() -> None:
    """Drop every circuit of the process, as a newly started process has none (tests)."""
    with _shared_lock:
        _shared.clear()
