"""The provider calls one e-mail worker process has out at once, shared by its chunks in flight.

Each send thread keeps its own kept connection to the provider; the slots over the threads let a
chunk claim a delivery only when a send can start for it at once.
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

# Chunks one e-mail worker process works on side by side: while one wave waits on PostgreSQL
# or on its slowest send, the other's sends use the freed slots.
CHUNKS_IN_FLIGHT = 2


class SendSlots:
    """The provider calls a process may have out at once, shared by its chunks in flight.

    A chunk takes as many slots as are free (waiting for one when none is), claims that many
    deliveries, and gives each slot back as its send ends: so a claim never waits behind other
    sends, and one chunk alone still uses every slot.
    """

    def __init__(self, size: int) -> None:
        self._free = size
        self._changed = threading.Condition()

    def take(self, wanted: int) -> int:
        """At least one slot and at most `wanted`, as many as are free."""
        with self._changed:
            while self._free == 0:
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


@cache
def send_capacity(size: int) -> SendCapacity:
    return SendCapacity(ThreadPoolExecutor(size, thread_name_prefix="send"), SendSlots(size))


def sender(
    backend: EmailBackend, slots: SendSlots
) -> Callable[[dict[str, Any]], SendResult | SendError]:
    def send(item: dict[str, Any]) -> SendResult | SendError:
        try:
            return sending.timed_send(backend, sending.outgoing(item))
        except SendError as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - a bug must not leave the wave claimed
            log.exception("delivery %s: backend crashed", item.get("delivery_id"))
            return TransientSendError(repr(exc))
        finally:
            slots.give()

    return send
