"""The provider circuit: open only after outages lasting the window, probe, close on success."""

from __future__ import annotations

from app.delivery.mail.failover import ProviderCircuit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_outages_open_the_circuit_only_once_they_last_the_window() -> None:
    clock = Clock()
    circuit = ProviderCircuit(window_s=30, probe_s=10, clock=clock)
    assert circuit.record_outage() is False  # the first outage starts the window
    clock.now = 29
    assert circuit.record_outage() is False and not circuit.open
    clock.now = 30
    assert circuit.record_outage() is True and circuit.open


def test_a_success_inside_the_window_starts_it_again() -> None:
    clock = Clock()
    circuit = ProviderCircuit(window_s=30, probe_s=10, clock=clock)
    circuit.record_outage()
    clock.now = 20
    circuit.record_success()
    clock.now = 40
    assert circuit.record_outage() is False  # 0 s of outage since the success, not 40


def test_an_open_circuit_lets_one_probe_through_per_interval_and_closes_on_success() -> None:
    clock = Clock()
    circuit = ProviderCircuit(window_s=0, probe_s=10, clock=clock)
    assert circuit.record_outage() is True
    assert circuit.use_primary() is False
    clock.now = 10
    assert circuit.use_primary() is True  # the probe
    assert circuit.use_primary() is False  # and only one
    assert circuit.record_success() is True and not circuit.open
    assert circuit.use_primary() is True
