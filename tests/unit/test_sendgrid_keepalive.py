"""The SendGrid backend keeps its connections: one per thread, replaced when the provider drops it.

Against the fake SendGrid (the v3 contract over local HTTP, keep-alive like the real API).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from app.delivery.mail.base import OutgoingEmail, PermanentSendError, TransientSendError
from app.delivery.mail.sendgrid_backend import SendGridBackend
from harness.fakes.sendgrid import FakeSendGrid


@pytest.fixture
def fake() -> Iterator[FakeSendGrid]:
    server = FakeSendGrid().start()
    yield server
    server.stop()


def backend(fake: FakeSendGrid, timeout_s: float = 5.0) -> SendGridBackend:
    return SendGridBackend(
        fake.api_key, host=fake.url, sender="Notify <noreply@notify.local>", timeout_s=timeout_s
    )


def mail(i: int) -> OutgoingEmail:
    return OutgoingEmail(
        delivery_id=str(uuid.uuid4()),
        to=f"user{i}@example.com",
        subject=f"Hello {i}",
        html=f"<p>Hello {i}</p>",
        text=f"Hello {i}",
    )


def test_sequential_sends_share_one_connection(fake: FakeSendGrid) -> None:
    sender = backend(fake)
    results = [sender.send(mail(i)) for i in range(20)]
    assert all(r.provider_message_id for r in results)
    assert len(fake.accepted()) == 20
    assert fake.connections == 1


def test_each_thread_keeps_its_own_connection(fake: FakeSendGrid) -> None:
    sender = backend(fake)
    errors: list[BaseException] = []

    def send_five(start: int) -> None:
        try:
            for i in range(start, start + 5):
                sender.send(mail(i))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=send_five, args=(10 * n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(fake.accepted_counts()) == 20 and set(fake.accepted_counts().values()) == {1}
    assert fake.connections == 4


def test_a_connection_the_provider_dropped_is_replaced_and_nothing_sent_twice(
    fake: FakeSendGrid,
) -> None:
    sender = backend(fake)
    fake.drop_connections = True
    for i in range(3):
        sender.send(mail(i))
        time.sleep(0.05)  # the server's close reaches the client's socket
    assert len(fake.received) == 3 and len(fake.accepted_counts()) == 3
    assert fake.connections == 3


def test_error_answers_map_as_before_and_keep_the_connection(fake: FakeSendGrid) -> None:
    sender = backend(fake)
    fake.script(400, 503)
    with pytest.raises(PermanentSendError, match="^400 "):
        sender.send(mail(1))
    with pytest.raises(TransientSendError, match="^503 "):
        sender.send(mail(2))
    sender.send(mail(3))
    assert [r.status for r in fake.received] == [400, 503, 202]
    assert fake.connections == 1


def test_a_rate_limit_carries_the_reset_time(fake: FakeSendGrid) -> None:
    sender = backend(fake)
    reset = time.time() + 30
    fake.rate_limit_until(reset)
    with pytest.raises(TransientSendError) as caught:
        sender.send(mail(1))
    assert caught.value.retry_at == int(reset)


def test_a_provider_that_stops_answering_times_out_then_a_new_connection_works(
    fake: FakeSendGrid,
) -> None:
    sender = backend(fake, timeout_s=0.3)
    sender.send(mail(0))
    fake.delay_s = 1.0
    with pytest.raises(TransientSendError, match="unreachable"):
        sender.send(mail(1))
    fake.delay_s = 0.0
    sender.send(mail(2))
    assert fake.connections == 2


def test_a_proxy_in_the_environment_is_honoured_per_host_and_read_once(monkeypatch) -> None:
    from app.delivery.mail import keepalive

    keepalive._proxied_host.cache_clear()
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:3128")
    monkeypatch.setenv("no_proxy", "internal.example")
    api = keepalive._key("https://api.sendgrid.com/v3/mail/send")
    internal = keepalive._key("https://internal.example:8443/v3/mail/send")
    assert keepalive._proxied_host(api) is True
    assert keepalive._proxied_host(internal) is False
    # Read once: the decision stands for the process (as urllib's own handlers are built once).
    monkeypatch.delenv("https_proxy")
    assert keepalive._proxied_host(api) is True
    keepalive._proxied_host.cache_clear()
    assert keepalive._proxied_host(api) is False
