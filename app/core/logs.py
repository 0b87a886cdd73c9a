"""Logging of every process from one dictConfig: text lines for people, JSON lines for collectors.

LOG_FORMAT=json makes each record one JSON object. Identifiers passed as `extra` (topic,
partition, offset, delivery_id, notification_id) become fields of their own, and a record logged
inside a Celery task carries the task's id and name.
"""

from __future__ import annotations

import logging
import logging.config
import re
from typing import Any, Literal

from celery._state import get_current_task

LogFormat = Literal["text", "json"]

TEXT_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"


class CeleryTaskContext(logging.Filter):
    """Adds `task_id` and `task_name` to records logged while a Celery task runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        task = get_current_task()
        if task is not None and task.request.id is not None:
            record.task_id = task.request.id
            record.task_name = task.name
        return True


# Query parameters that carry a credential (the unsubscribe link's signed token).
_SECRET_QUERY = re.compile(r"((?:^|[?&;])(?:token|signature|key)=)[^&;#\s]*", re.IGNORECASE)


def redact_query(path: str) -> str:
    """The path with the values of credential-carrying query parameters replaced."""
    return _SECRET_QUERY.sub(r"\1[redacted]", path)


class RedactAccessTokens(logging.Filter):
    """Keeps unsubscribe tokens out of uvicorn's access log (it logs each request's full path).

    A token in a log is a working unsubscribe link for whoever can read the logs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_query(args[2]), *args[3:])
        return True


def _formatter(fmt: LogFormat) -> dict[str, Any]:
    if fmt == "text":
        return {"format": TEXT_FORMAT}
    return {
        "()": "pythonjsonlogger.json.JsonFormatter",
        "fmt": JSON_FIELDS,
        "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        "datefmt": "%Y-%m-%dT%H:%M:%S%z",
    }


# HTTP client libraries log each request's URL at INFO (the Schema Registry client's httpx2 does):
# a line per call that says nothing our own lines do not, and a URL may carry credentials.
HTTP_CLIENT_LOGGERS = ("httpx", "httpx2")


def logging_config(fmt: LogFormat, level: str | int = "INFO") -> dict[str, Any]:
    """A dictConfig: one stderr handler on the root logger, in the chosen format."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"notify": _formatter(fmt)},
        "filters": {"task": {"()": CeleryTaskContext}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "notify",
                "filters": ["task"],
            }
        },
        "root": {"level": level, "handlers": ["default"]},
        "loggers": {name: {"level": "WARNING"} for name in HTTP_CLIENT_LOGGERS},
    }


def faust_logging_config(fmt: LogFormat) -> dict[str, Any]:
    """Faust's `logging_config`, merged into its own: our handler, its `--loglevel`."""
    config = logging_config(fmt)
    del config["root"]
    return {**config, "merge": True}


def uvicorn_logging_config(fmt: LogFormat, level: str | int = "INFO") -> dict[str, Any]:
    """uvicorn's `log_config`: its loggers hand their records to our root handler."""
    config = logging_config(fmt, level)
    config["filters"]["redact"] = {"()": RedactAccessTokens}
    config["loggers"].update(
        {
            name: {"level": level, "handlers": [], "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        }
    )
    config["loggers"]["uvicorn.access"]["filters"] = ["redact"]
    return config


# Celery's own line per task received and per task succeeded. Every task logs what it did itself
# (an e-mail: "delivery ... sent", with its id), so at INFO these only doubled the lines, and
# they were a twentieth of the e-mail worker's CPU. Failures are still logged at ERROR.
PER_TASK_LOGGERS = ("celery.worker.strategy", "celery.app.trace")


def quiet_per_task_lines() -> None:
    """Show Celery's per-task received/succeeded lines only at DEBUG (`--loglevel debug`)."""
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        for name in PER_TASK_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


def configure(fmt: LogFormat, level: str | int = "INFO") -> None:
    """Configure this process's logging (every process but the Faust worker)."""
    logging.config.dictConfig(logging_config(fmt, level))
