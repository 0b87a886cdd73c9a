"""Which failures are outages to wait for, and which belong to one input."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from app.core.faults import is_transient


@pytest.mark.parametrize(
    "code",
    [KafkaError._TIMED_OUT, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN],
)
def test_librdkafka_s_own_errors_for_an_unreachable_broker_are_outages(code: int) -> None:
    assert not KafkaError(code).retriable()  # librdkafka does not say so itself
    assert is_transient(KafkaException(KafkaError(code)))


@pytest.mark.parametrize("code", [KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.UNKNOWN_TOPIC_OR_PART])
def test_what_a_retry_cannot_mend_is_not_an_outage(code: int) -> None:
    assert not is_transient(KafkaException(KafkaError(code)))


def test_an_outage_found_in_the_causes_counts() -> None:
    try:
        try:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT))
        except KafkaException as inner:
            raise RuntimeError("describe_topics failed") from inner
    except RuntimeError as outer:
        assert is_transient(outer)
