"""Recovery in seconds: 100 registrations a second while each dependency fails in turn.

The whole pipeline runs as separate processes; a fake Auth and a fake SendGrid speak the real
contracts over HTTP. First a burst of registrations measures the pipeline's full rate in this
run. Then registrations flow at RATE a second while, well apart, PostgreSQL restarts, RabbitMQ's
application stops for 10 s, Auth answers 503 for 30 s, the Kafka broker is killed and started
again, SendGrid answers 503 for 30 s, and then Auth and SendGrid are down together.

For each fault: the first welcome mail of a registration made during it reaches the provider at
most RECOVERY_S after the fault ended, and the backlog it left is sent within DRAINED_WITHIN_S;
the rate it drained at is printed against two floors of the same run: the burst's rate, and
the steady rate, what the pipeline delivers while STEADY_RATE registrations a second are offered
for STEADY_S (as `bench/e2e_latency.py` offers a steady rate). In the end every registration got its
welcome mail exactly once. Run it alone with `pytest -m chaos`.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from app.auth.dev_server import DevAuthHandler, DevAuthServer, generate_users
from app.config import REPO_ROOT
from app.contracts import Event, encode_event
from app.db.session import dispose_engines
from app.kafka.producer import PublishReport, make_producer
from harness.fakes.sendgrid import FakeSendGrid
from harness.pipeline import Pipeline, reset_state
from harness.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
log = logging.getLogger(__name__)

RATE = 100  # registrations a second
BURST = 3000
GAP_S = 30  # between faults: the backlog drains, then a steady flow again
OUTAGE_S = 30
RECOVERY_S = 5.0
# Every backlog is sent within this of its first mail. The rate it drains at, against the
# burst's, is printed: on two shared cores it moves by a fifth from run to run for the same
# code (docs/benchmarks.md, "Recovery"), too much for an assertion that must not flake.
DRAINED_WITHIN_S = 20.0
SECONDS = 420  # registrations produced at most (the flow lasts about 350 s)
STEADY_RATE = 500  # offered a second for the steady floor (bench/e2e_latency.py holds 500/s)
STEADY_S = 20
SETTLE_S = 5  # the first seconds of the steady phase, before its rate is measured
USERS = [
    {**u, "timezone": "UTC", "notification_policy": {"email": True, "likes": True, "mailing": True}}
    for u in generate_users(BURST + STEADY_RATE * STEADY_S + RATE * SECONDS, seed=26)
]
TOKEN = "recovery-token"


class OutageAuthHandler(DevAuthHandler):
    """The dev Auth server's contract, answering 503 while its server is `down`."""

    server: OutageAuthServer

    def do_GET(self) -> None:
        if self.server.down and self.path != "/health":
            self._answer(503, {"error": "unavailable"})
            return
        super().do_GET()

    def do_POST(self) -> None:
        if self.server.down:
            self.rfile.read(max(0, int(self.headers.get("Content-Length") or 0)))
            self._answer(503, {"error": "unavailable"})
            return
        super().do_POST()


class OutageAuthServer(DevAuthServer):
    down = False


@dataclass
class Fault:
    name: str
    started: float
    ended: float


class Registrations:
    """Registrations produced at `rate` a second (a producer's buffer rides out a broker outage)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.topic = pipeline.topics["user_registered"]
        # A producer that reconnects within a second once the broker is back.
        self.producer = make_producer(pipeline.settings, **{"reconnect.backoff.max.ms": 1000})
        self.report = PublishReport()
        self.published: dict[str, float] = {}  # e-mail -> when it was produced
        self._users = iter(USERS)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def burst(self, count: int) -> list[str]:
        emails = [self._produce(next(self._users)) for _ in range(count)]
        self.producer.flush(60)
        return emails

    def steady(self, rate: int, seconds: float) -> list[str]:
        """Registrations at `rate` a second for `seconds`, in ticks of a tenth of a second."""
        emails: list[str] = []
        due = time.monotonic()
        for _ in range(int(seconds * 10)):
            emails += [self._produce(next(self._users)) for _ in range(rate // 10)]
            self.producer.poll(0)
            due += 0.1
            time.sleep(max(due - time.monotonic(), 0))
        self.producer.flush(60)
        return emails

    def start(self) -> Registrations:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        left = self.producer.flush(180)
        assert left == 0 and self.report.failed == 0, self.report.errors

    def _produce(self, user: dict[str, Any]) -> str:
        event = Event(uuid.UUID(user["user_id"]), "once", None, f"https://auth/c/{user['user_id']}")
        self.published[user["email"]] = time.time()
        self.producer.produce(
            self.topic,
            key=user["user_id"].encode(),
            value=encode_event(event),
            on_delivery=self.report.on_delivery,
        )
        return str(user["email"])

    def _run(self) -> None:
        tick, per_tick = 0.1, RATE // 10
        due = time.monotonic()
        while not self._stop.is_set():
            for _ in range(per_tick):
                self._produce(next(self._users))
            self.producer.poll(0)
            due += tick
            self._stop.wait(max(due - time.monotonic(), 0))


@pytest.fixture(scope="module")
def auth() -> Iterator[OutageAuthServer]:
    server = OutageAuthServer(("127.0.0.1", 0), USERS, TOKEN, OutageAuthHandler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def pipeline(
    sendgrid: FakeSendGrid, auth: OutageAuthServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    from app.config import get_settings

    settings = get_settings()
    reset_state(settings)
    tmp = tmp_path_factory.mktemp("recovery")
    users_file = tmp / "users.json"
    users_file.write_text("[]")  # the pipeline's own dev Auth server is stopped below
    extra = {
        "QUIET_HOURS": "",
        "AUTH_API_URL": f"http://127.0.0.1:{auth.server_address[1]}",
        "AUTH_API_TOKEN": TOKEN,
    }
    running = Pipeline(settings, tmp, users_file, sendgrid.url, sendgrid.api_key, extra_env=extra)
    try:
        running.start()
        running.processes["auth"].stop()  # Auth is the fake above, which can answer 503
        yield running
    finally:
        running.stop()
        dispose_engines()


def _services(*args: str) -> None:
    done = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts/services.sh"), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"services.sh {args}: {done.stdout}{done.stderr}"


def _accepted(sendgrid: FakeSendGrid) -> dict[str, list[float]]:
    """When the provider accepted mail, by recipient."""
    times: dict[str, list[float]] = {}
    for r in sendgrid.accepted():
        assert r.body is not None
        times.setdefault(r.body["personalizations"][0]["to"][0]["email"], []).append(r.at)
    return times


def _all_sent(sendgrid: FakeSendGrid, emails: list[str]) -> Callable[[], bool]:
    return lambda: set(emails) <= _accepted(sendgrid).keys()


def _full_rate(sendgrid: FakeSendGrid, emails: list[str]) -> float:
    """Mails a second between the first and the last of a burst."""
    accepted = _accepted(sendgrid)
    times = sorted(min(accepted[e]) for e in emails)
    return (len(times) - 1) / (times[-1] - times[0])


def _steady_rate(sendgrid: FakeSendGrid, emails: list[str], started: float, ended: float) -> float:
    """Mails a second delivered while a steady rate was offered, after it settled."""
    accepted = _accepted(sendgrid)
    window = (started + SETTLE_S, ended)
    sent = sum(e in accepted and window[0] <= min(accepted[e]) <= window[1] for e in emails)
    return sent / (window[1] - window[0])


@dataclass
class Recovery:
    fault: Fault
    first_mail_s: float  # from the fault's end to the first mail of a registration made in it
    backlog: int  # registrations made before the end still without mail at the end
    drain_s: float  # from that first mail until the last of the backlog went
    drain_rate: float  # mails a second while draining (the flow's own included)


def _recovery(fault: Fault, published: dict[str, float], first_sent: dict[str, float]) -> Recovery:
    during = [e for e, at in published.items() if fault.started <= at <= fault.ended]
    first = min(first_sent[e] for e in during)
    resumed = max(first, fault.ended)
    backlog = [e for e, at in published.items() if at <= fault.ended < first_sent[e]]
    drained = max((first_sent[e] for e in backlog), default=resumed)
    sent = sum(resumed < at <= drained for at in first_sent.values())
    drain_s = drained - resumed
    return Recovery(
        fault,
        max(first - fault.ended, 0.0),
        len(backlog),
        drain_s,
        sent / drain_s if drain_s > 0 else float("inf"),
    )


def _apart(name: str, action: Callable[[], None], faults: list[Fault]) -> None:
    started = time.time()
    action()
    dispose_engines()  # this process's pooled connections may have died
    faults.append(Fault(name, started, time.time()))
    log.warning("%s: over after %.1f s", name, faults[-1].ended - started)
    time.sleep(GAP_S)


def _auth_and_provider_down(auth: OutageAuthServer, sendgrid: FakeSendGrid) -> None:
    auth.down = True
    time.sleep(10)
    sendgrid.down_until(time.time() + OUTAGE_S)
    time.sleep(OUTAGE_S - 10)
    auth.down = False  # Auth is back first; the provider 10 s later
    time.sleep(10)


def test_mail_flows_again_within_seconds_of_each_fault_at_100_a_second(
    pipeline: Pipeline,
    sendgrid: FakeSendGrid,
    auth: OutageAuthServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    registrations = Registrations(pipeline)
    burst = registrations.burst(BURST)
    wait_for(_all_sent(sendgrid, burst), timeout=300, what="the burst's welcome mails")
    full_rate = _full_rate(sendgrid, burst)
    started = time.time()
    steady = registrations.steady(STEADY_RATE, STEADY_S)
    steady_rate = _steady_rate(sendgrid, steady, started, time.time())
    wait_for(_all_sent(sendgrid, steady), timeout=300, what="the steady phase's welcome mails")

    def auth_503() -> None:
        auth.down = True
        time.sleep(OUTAGE_S)
        auth.down = False

    def sendgrid_503() -> None:
        sendgrid.down_until(time.time() + OUTAGE_S)
        time.sleep(OUTAGE_S)

    faults: list[Fault] = []
    registrations.start()
    flow_started = time.time()
    try:
        time.sleep(10)  # a steady flow first
        _apart("PostgreSQL restart", lambda: _services("restart", "postgres"), faults)
        _apart("RabbitMQ stop_app 10 s", lambda: _services("pause", "rabbitmq", "10"), faults)
        _apart("Auth 503 for 30 s", auth_503, faults)
        _apart("Kafka broker killed, started", lambda: _services("crash", "kafka"), faults)
        _apart("SendGrid 503 for 30 s", sendgrid_503, faults)
        _apart(
            "Auth and SendGrid down together",
            lambda: _auth_and_provider_down(auth, sendgrid),
            faults,
        )
    finally:
        registrations.stop()
    flow_s = time.time() - flow_started

    emails = list(registrations.published)
    wait_for(_all_sent(sendgrid, emails), timeout=600, what="every welcome mail", every=2)
    accepted = _accepted(sendgrid)
    first_sent = {e: min(times) for e, times in accepted.items()}
    recoveries = [_recovery(f, registrations.published, first_sent) for f in faults]
    duplicates = sum(len(times) - 1 for times in accepted.values())
    report = [
        f"{r.fault.name}: first mail {r.first_mail_s:.1f} s after it ended; backlog {r.backlog} "
        f"drained in {r.drain_s:.1f} s at {r.drain_rate:.0f}/s "
        f"({r.drain_rate / full_rate:.2f} of the burst's rate, "
        f"{r.drain_rate / steady_rate:.2f} of the steady rate)"
        for r in recoveries
    ]
    with capsys.disabled():
        print(  # noqa: T201
            f"\nrecovery: {len(emails)} registrations ({RATE}/s for {flow_s:.0f} s after a burst "
            f"of {BURST} at {full_rate:.0f}/s and {STEADY_RATE}/s offered for {STEADY_S} s, "
            f"delivered at {steady_rate:.0f}/s), {sum(map(len, accepted.values()))} mails, "
            f"{duplicates} duplicated\n  " + "\n  ".join(report)
        )
    assert set(accepted) == set(emails)
    assert duplicates == 0, [e for e, times in accepted.items() if len(times) > 1][:10]
    assert flow_s >= 240
    for r in recoveries:
        assert r.first_mail_s <= RECOVERY_S, report
        assert r.drain_s <= DRAINED_WITHIN_S, report
    dead = [name for name, p in pipeline.processes.items() if name != "auth" and not p.alive()]
    assert dead == [], pipeline.logs()
