"""The provider down: e-mails park behind the worker's circuit and go once a probe succeeds.

A real e-mail worker sends through a fake SendGrid that answers 503. After a few outages in a
row the worker's circuit opens: from then on its chunks are handed back unclaimed (parked), one
e-mail every probe interval tries the provider, and no delivery spends an attempt on the outage.
When the provider is back, the next probe closes the circuit and the parked mail goes out
within one probe interval.
"""

from __future__ import annotations

import time
import urllib.request
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.config import Settings
from app.core.clock import utcnow
from app.db.models import Delivery
from harness.delivery import Worker, deliveries, dispatch, purge_emails_queue, seed
from harness.fakes.sendgrid import FakeSendGrid
from harness.waiting import free_port, wait_for

pytestmark = pytest.mark.integration

MAILS = 60
THREADS = 4
THRESHOLD = 5
PROBE_S = 2.0
# Time a released e-mail takes to go through the worker (claim, send, record) on a busy machine.
SLACK_S = 2.0


def _sample(url: str, name: str, **labels: str) -> float:
    with urllib.request.urlopen(url, timeout=5) as response:
        body = response.read().decode()
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def _between_probes() -> dict[uuid.UUID, Delivery] | None:
    rows = deliveries()
    return rows if all(r.status != "sending" for r in rows.values()) else None


def test_a_parked_email_spends_no_attempt_and_goes_within_one_probe_interval(
    db: str, settings: Settings, tmp_path
) -> None:
    purge_emails_queue(settings)
    fake = FakeSendGrid().start()
    fake.down_until(time.time() + 3600)
    port = free_port()
    metrics = f"http://127.0.0.1:{port}/metrics"
    worker = Worker(
        settings,
        tmp_path / "worker.log",
        concurrency=THREADS,
        email_backend="sendgrid",
        sendgrid_host=fake.url,
        sendgrid_api_key=fake.api_key,
        circuit_failure_threshold=THRESHOLD,
        circuit_probe_interval_s=PROBE_S,
        metrics_port=port,
    )
    try:
        ids = [d for d, _u, _k in seed(settings, utcnow(), ["mailing"] * MAILS)]
        assert dispatch(utcnow()) == MAILS
        worker.start()
        wait_for(
            lambda: _sample(metrics, "notify_circuit_state", dependency="mail:sendgrid") == 2,
            timeout=30,
            what="the provider's circuit open",
        )
        opened = time.time()
        time.sleep(3 * PROBE_S)  # parked e-mails come back and park again; probes go and fail
        parked = _sample(metrics, "notify_circuit_parked_total", dependency="mail:sendgrid")
        # Read between probes: a probe's e-mail is claimed ('sending') for its few milliseconds.
        rows = wait_for(_between_probes, timeout=10, what="no probe out", every=0.05)
        # Counted after the rows were read, so every call the rows show is in the count (a probe
        # may go between the parked figure and the rows).
        outage_calls = len(fake.received)
        # Not retried each on its own schedule: the outage saw the waves before the circuit
        # opened and one probe per interval, not one call per e-mail and retry.
        probes = (time.time() - opened) / PROBE_S + 2
        assert outage_calls <= THRESHOLD + 2 * THREADS + probes, outage_calls
        assert parked >= MAILS - outage_calls
        assert {rows[i].status for i in ids} == {"enqueued"}
        # An outage is not the e-mail's fault: no attempt counted against any delivery.
        assert {rows[i].attempts - rows[i].deferrals for i in ids} == {0}
        assert sum(rows[i].attempts == 0 for i in ids) >= MAILS - outage_calls

        back = time.time()
        fake.down_until(0)
        wait_for(lambda: len(fake.accepted()) == MAILS, timeout=60, what="every parked e-mail")
        accepted = sorted(r.at for r in fake.accepted())
        first, last = accepted[0], accepted[-1]
        print(  # noqa: T201
            f"\nparking: {outage_calls} provider calls during the outage, {parked:.0f} parked; "
            f"first mail {first - back:.2f} s after the provider was back, all {MAILS} "
            f"{last - first:.2f} s after the first"
        )
        assert first - back <= PROBE_S + SLACK_S
        assert last - first <= PROBE_S + SLACK_S
        assert fake.accepted_counts() == {str(i): 1 for i in ids}
        wait_for(
            lambda: {d.status for d in deliveries().values()} == {"sent"},
            timeout=30,
            what="every send recorded",
        )
        rows = deliveries()
        assert {rows[i].attempts - rows[i].deferrals for i in ids} == {1}
        assert _sample(metrics, "notify_circuit_state", dependency="mail:sendgrid") == 0
    finally:
        worker.kill()
        fake.stop()
