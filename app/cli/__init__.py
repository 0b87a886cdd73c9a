"""`notify ...`: the command line of the service, one module per group of commands."""

from __future__ import annotations

import sys

import click
from pydantic import ValidationError

from app.cli import demo, operators, processes, setup, suppressions
from app.config import get_settings
from app.core import logs


@click.group()
@click.option("--log-level", default="INFO", show_default=True)
def main(log_level: str) -> None:
    """Kafka-native notification service."""
    if "--help" in sys.argv[1:]:
        # Help is read before any configuration exists: it needs none, and must not be refused.
        logs.configure("text", log_level)
        return
    try:
        settings = get_settings()
    except ValueError as exc:  # a refused configuration: say which setting, not a trace
        raise click.ClickException(f"configuration refused: {_reasons(exc)}") from exc
    logs.configure(settings.log_format, log_level)


for module in (setup, processes, operators, suppressions, demo):
    for command in module.COMMANDS:
        main.add_command(command)


def _reasons(exc: ValueError) -> str:
    # Pydantic's messages name the setting and the problem, never the value (it may be secret).
    if isinstance(exc, ValidationError):
        messages = (str(error["msg"]).removeprefix("Value error, ") for error in exc.errors())
        return "; ".join(messages)
    return str(exc)
