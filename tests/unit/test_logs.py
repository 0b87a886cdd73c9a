"""Log formats: text for people, one JSON object per record for collectors."""

from __future__ import annotations

import io
import json
import logging
import logging.config
from collections.abc import Iterator

import pytest
from celery import Celery

from app.core.logs import faust_logging_config, logging_config, uvicorn_logging_config


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The root logger's output under a config, restored afterwards."""
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)


def _configure(fmt: str, stream: io.StringIO) -> None:
    config = logging_config(fmt)  # type: ignore[arg-type]
    config["handlers"]["default"]["stream"] = stream
    logging.config.dictConfig(config)


def test_json_lines_carry_level_logger_message_and_extra_fields(captured: io.StringIO) -> None:
    _configure("json", captured)
    logging.getLogger("app.stream.batches").warning(
        "dead letter at %s[%d]@%d", "t", 2, 41, extra={"topic": "t", "partition": 2, "offset": 41}
    )
    (line,) = captured.getvalue().splitlines()
    record = json.loads(line)
    assert record["level"] == "WARNING"
    assert record["logger"] == "app.stream.batches"
    assert record["message"] == "dead letter at t[2]@41"
    assert (record["topic"], record["partition"], record["offset"]) == ("t", 2, 41)
    assert "task_id" not in record  # not inside a Celery task
    assert record["time"][:2] == "20" and "T" in record["time"]


def test_records_logged_inside_a_celery_task_name_the_task(captured: io.StringIO) -> None:
    _configure("json", captured)
    app = Celery("logs-test")

    @app.task(name="test.logs")  # type: ignore[untyped-decorator]  # Celery is untyped
    def logs_something() -> None:
        logging.getLogger("app.delivery.sending").info(
            "delivery x sent", extra={"delivery_id": "x"}
        )

    logs_something.apply(task_id="task-123")
    record = next(
        json.loads(line) for line in captured.getvalue().splitlines() if "delivery x sent" in line
    )
    assert record["task_id"] == "task-123"
    assert record["task_name"] == "test.logs"
    assert record["delivery_id"] == "x"


def test_text_lines_stay_readable(captured: io.StringIO) -> None:
    _configure("text", captured)
    logging.getLogger("app.jobs.digests").info("dispatched %d e-mail tasks", 3)
    line = captured.getvalue().strip()
    assert line.endswith("[INFO] app.jobs.digests: dispatched 3 e-mail tasks")
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_faust_keeps_its_log_level_and_uvicorn_hands_records_to_our_handler() -> None:
    faust = faust_logging_config("json")
    assert faust["merge"] is True and "root" not in faust
    assert faust["handlers"]["default"]["formatter"] == "notify"
    uvicorn = uvicorn_logging_config("json")
    assert uvicorn["loggers"]["uvicorn.access"] == {
        "level": "INFO",
        "handlers": [],
        "propagate": True,
        "filters": ["redact"],  # tokens out of the access log
    }


@pytest.mark.parametrize(("level", "shown"), [("INFO", False), ("DEBUG", True)])
def test_celerys_per_task_lines_show_only_at_debug_and_failures_always(
    level: str, shown: bool
) -> None:
    from app.core import logs

    stream = io.StringIO()
    try:
        logging.config.dictConfig(logging_config("text", level))
        logging.getLogger().handlers[0].setStream(stream)  # type: ignore[attr-defined]
        logs.quiet_per_task_lines()
        trace = logging.getLogger("celery.app.trace")
        trace.info("Task app.tasks.send_email[1] succeeded in 0.01s: 'sent'")
        trace.error("Task app.tasks.send_email[2] raised unexpected: boom")
        assert ("succeeded" in stream.getvalue()) is shown
        assert "raised unexpected" in stream.getvalue()
    finally:
        for name in logs.PER_TASK_LOGGERS:
            logging.getLogger(name).setLevel(logging.NOTSET)


def test_the_access_log_never_shows_an_unsubscribe_token() -> None:
    from app.core.logs import redact_query

    assert redact_query("/unsubscribe?token=abc.DEF-123&x=1") == "/unsubscribe?token=[redacted]&x=1"
    assert redact_query("/a?x=1&Token=s3cret") == "/a?x=1&Token=[redacted]"
    assert redact_query("/admin/login?next=/admin/") == "/admin/login?next=/admin/"
    stream = io.StringIO()
    config = uvicorn_logging_config("text")
    logging.config.dictConfig(config)
    access = logging.getLogger("uvicorn.access")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        # uvicorn's own access record: '%s - "%s %s HTTP/%s" %d' with the full path as an arg.
        access.info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", "/unsubscribe?token=t0k3n", "1.1", 200
        )
    finally:
        logging.getLogger().removeHandler(handler)
    assert "t0k3n" not in stream.getvalue()
    assert "/unsubscribe?token=[redacted]" in stream.getvalue()
