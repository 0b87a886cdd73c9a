"""The provider calls one e-mail worker process has out at once, and the claims it may hold.

Each send thread keeps its own kept connection to the provider. A process holds at most
CLAIMS_PER_THREAD claims per send thread, counted from the claim to the record of its outcome: so
while one wave is in the provider call, the next is already claimed and waits for a free thread
(at most one provider call per thread ahead of it), and the claim's round trip to PostgreSQL
overlaps the sends instead of leaving the threads idle.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import Any

from app.delivery import sending
from app.delivery.mail.base import EmailBackend, SendError, SendResult, TransientSendError

log = logging.getLogger(__name__)

# Chunks one e-mail worker process works on side by side: while one wave is claimed or recorded
# in PostgreSQL, the other's sends keep the threads busy.
CHUNKS_IN_FLIGHT = 2
# Claims held per send thread, from the claim to the record: a wave in the provider call and the
# next one waiting behind it. More only makes claims wait longer in 'sending' before their send.
CLAIMS_PER_THREAD = 2


class SendSlots:
    """The claims a process may hold at once, shared by its chunks in flight.

    A chunk takes as many slots as are free (waiting for one when none is), claims that many
    deliveries, and gives the slots back once their outcomes are recorded: so the claimed but
    unrecorded deliveries of a process (what a kill -9 can leave in the provider-ack window)
    never exceed the slots, and one chunk alone still uses every send thread.
    """

    def __init__(self, size: int) -> None:
        self._free = size
        self._changed = threading.Condition()

    def take(self, wanted: int, *, wait: bool = True) -> int:
        """At most `wanted` slots, as many as are free: at least one, or none without `wait`."""
        with self._changed:
            while self._free == 0:
                if not wait:
                    return 0
                self._changed.wait()
            taken = min(self._free, wanted)
            self._free -= taken
            return taken

    def give(self, count: int = 1) -> None:
        if count <= 0:
            return
        with self._changed:
            self._free += count
            self._changed.notify_all()


@dataclass(frozen=True, slots=True)
class SendCapacity:
    """The process's send threads (each keeps its own connection) and the slots over them."""

    pool: ThreadPoolExecutor
    slots: SendSlots
    threads: int


@cache
def send_capacity(threads: int) -> SendCapacity:
    pool = ThreadPoolExecutor(threads, thread_name_prefix="send")
    return SendCapacity(pool, SendSlots(threads * CLAIMS_PER_THREAD), threads)


def sender(backend: EmailBackend) -> Callable[[dict[str, Any]], SendResult | SendError]:
    def send(item: dict[str, Any]) -> SendResult | SendError:
        try:
            return sending.timed_send(backend, sending.outgoing(item))
        except SendError as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - a bug must not leave the wave claimed
            log.exception("delivery %s: backend crashed", item.get("delivery_id"))
            return TransientSendError(repr(exc))

    return send
