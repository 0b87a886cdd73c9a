"""`notify ...`: the command line of the service, one module per group of commands."""

from __future__ import annotations

import click
from pydantic import ValidationError

from app.cli import demo, operators, processes, setup
from app.config import get_settings
from app.core import logs


@click.group()
@click.option("--log-level", default="INFO", show_default=True)
def main(log_level: str) -> None:
    """Kafka-native notification service."""
    try:
        settings = get_settings()
    except ValidationError as exc:  # a refused configuration: say which setting, not a trace
        reasons = "; ".join(
            str(error["msg"]).removeprefix("Value error, ") for error in exc.errors()
        )
        raise click.ClickException(f"configuration refused: {reasons}") from exc
    logs.configure(settings.log_format, log_level)


for module in (setup, processes, operators, demo):
    for command in module.COMMANDS:
        main.add_command(command)
