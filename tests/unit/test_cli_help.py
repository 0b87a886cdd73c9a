"""`notify CMD --help` works with no configuration at all, for every command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click

from app.cli import main

BIN = Path(sys.executable).parent


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        found.append((*prefix, name))
        if isinstance(command, click.Group):
            found += _commands(command, (*prefix, name))
    return found


def test_every_command_shows_its_help_without_any_configuration(tmp_path: Path) -> None:
    commands = _commands(main)
    assert len(commands) > 20
    # Nothing of ours in the environment: no DEV_MODE, no secrets, no .env in the directory.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    running = {
        " ".join(command): subprocess.Popen(
            [str(BIN / "notify"), *command, "--help"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for command in commands
    }
    refused = {}
    for name, process in running.items():
        out, _ = process.communicate(timeout=120)
        if process.returncode != 0 or "Usage: notify" not in out:
            refused[name] = out[-300:]
    assert refused == {}
