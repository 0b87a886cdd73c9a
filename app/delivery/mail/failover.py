"""Provider failover: when the primary backend has been down for a while, send through another.

The primary's circuit opens once its outages (5xx, timeouts, refused connections, throttling)
have lasted `window_s` without a success in between. While it is open, every e-mail goes out
through the fallback, and each delivery records which backend sent it. Every `probe_s` one
e-mail tries the primary again; its first success closes the circuit, and the primary is used
from then on. A permanent refusal (a 4xx) is the e-mail's own fault: it never opens the circuit
and never moves the e-mail to the fallback; nor does a timeout, after which the primary may have
accepted the e-mail (docs/fault-model.md, "Provider failover").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from app.core import metrics
from app.delivery.mail.base import (
    EmailBackend,
    OutgoingEmail,
    SendResult,
    TransientSendError,
    UnconfirmedSendError,
)

log = logging.getLogger(__name__)


class ProviderCircuit:
    """Closed while the primary works; open after outages lasting `window_s`; probes."""

    def __init__(
        self, *, window_s: float, probe_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window_s, self.probe_s, self._clock = window_s, probe_s, clock
        self._lock = threading.Lock()
        self._failing_since: float | None = None
        self._opened_at: float | None = None
        self._last_probe = 0.0

    @property
    def open(self) -> bool:
        with self._lock:
            return self._opened_at is not None

    def use_primary(self) -> bool:
        """Whether this e-mail goes to the primary: always while closed, one per probe_s open."""
        with self._lock:
            if self._opened_at is None:
                return True
            now = self._clock()
            if now - self._last_probe >= self.probe_s:
                self._last_probe = now
                return True
            return False

    def record_success(self) -> bool:
        """The primary accepted an e-mail; return whether that closed an open circuit."""
        with self._lock:
            was_open = self._opened_at is not None
            self._failing_since = self._opened_at = None
            return was_open

    def record_outage(self) -> bool:
        """The primary was down for one e-mail; return whether that opened the circuit."""
        with self._lock:
            now = self._clock()
            if self._failing_since is None:
                self._failing_since = now
            if self._opened_at is None and now - self._failing_since >= self.window_s:
                self._opened_at = self._last_probe = now
                return True
            return False


class FailoverBackend:
    """Send through `primary`, or through `fallback` while the primary's circuit is open."""

    name = "failover"

    def __init__(
        self, primary: EmailBackend, fallback: EmailBackend, circuit: ProviderCircuit
    ) -> None:
        self.primary, self.fallback, self.circuit = primary, fallback, circuit

    def send(self, email: OutgoingEmail) -> SendResult:
        """Send one e-mail; say in the result which backend took it."""
        if not self.circuit.use_primary():
            return self._through(self.fallback, email)
        try:
            result = self._through(self.primary, email)
        except TransientSendError as exc:
            if exc.outage and self.circuit.record_outage():
                primary, fallback = _name(self.primary), _name(self.fallback)
                log.warning(
                    "%s has been down for %.0f s: sending through %s until it is back",
                    primary,
                    self.circuit.window_s,
                    fallback,
                )
                metrics.PROVIDER_FAILOVER.set(1)
            # A timeout is no refusal: the primary may have taken this e-mail, and sending it
            # through the fallback too would be a duplicate. It waits for confirmation instead.
            if exc.outage and self.circuit.open and exc.unconfirmed:
                raise UnconfirmedSendError(f"{_name(self.primary)}: {exc}") from exc
            if not (exc.outage and self.circuit.open):
                raise
            return self._through(self.fallback, email)  # this one need not wait either
        if self.circuit.record_success():
            log.warning("%s is back: sending through it again", _name(self.primary))
            metrics.PROVIDER_FAILOVER.set(0)
        return result

    @staticmethod
    def _through(backend: EmailBackend, email: OutgoingEmail) -> SendResult:
        result = backend.send(email)
        return SendResult(result.provider_message_id, backend=_name(backend))


def _name(backend: EmailBackend) -> str:
    return str(getattr(backend, "name", type(backend).__name__))
