"""Which failures are transient (retry the work later) and which belong to the input (isolate it).

Only an outage of something we depend on is worth waiting for: PostgreSQL or Kafka unreachable,
a dropped connection, a serialization failure, a deadlock, a lock or pool timeout. Anything else
(a value PostgreSQL refuses, a missing template, a bug that one input triggers) fails again on
every retry, so retrying it would stop everything behind it for good; such a failure is pinned to
the smallest unit that caused it instead (docs/fault-model.md).
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import exc as sa_exc

# SQLAlchemy wraps the driver's errors: OperationalError covers a lost or refused connection,
# psycopg2's SerializationFailure/DeadlockDetected (TransactionRollbackError) and lock timeouts.
_TRANSIENT_DB = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,  # the connection pool had no connection in time
)
# A failure of code that talks to a broker or a server over the network.
_TRANSIENT_OS = (ConnectionError, TimeoutError)


def chain(error: BaseException) -> Iterator[BaseException]:
    """`error` and what caused it, each once."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_transient(error: BaseException) -> bool:
    """True when `error` (or what caused it) is an outage that a later retry can outlive."""
    for link in chain(error):
        if isinstance(link, sa_exc.DBAPIError) and link.connection_invalidated:
            return True
        if isinstance(link, _TRANSIENT_DB + _TRANSIENT_OS):
            return True
        if _is_kafka_outage(link):
            return True
    return False


def _is_kafka_outage(error: BaseException) -> bool:
    # confluent-kafka and aiokafka errors, by their own retriable flags where they have them.
    module = type(error).__module__
    if module.startswith("confluent_kafka") or module == "cimpl":
        kafka_error = error.args[0] if error.args else None
        code = getattr(kafka_error, "code", None)
        if callable(code) and code() in _local_kafka_outages():
            return True
        retriable = getattr(kafka_error, "retriable", None)
        return bool(retriable()) if callable(retriable) else True
    if module.startswith("aiokafka"):
        return bool(getattr(error, "retriable", True))
    return False


def _local_kafka_outages() -> frozenset[int]:
    """librdkafka's own errors for a broker it cannot reach: not flagged retriable, yet the
    broker being down (a restart, a crash) is all they say."""
    from confluent_kafka import KafkaError

    return frozenset((KafkaError._TIMED_OUT, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN))


def describe(error: BaseException, limit: int = 2000) -> str:
    """A one-line account of an error for an operator: its type and message, bounded in size."""
    text = f"{type(error).__name__}: {error}"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
