"""The Procfile under honcho, as `make run` starts it, on topics and an app id of a test's own."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.config import REPO_ROOT, Settings
from app.kafka.admin import ensure_topics
from harness.pipeline import BIN
from harness.waiting import free_port


def private_env(settings: Settings, tmp: Path, prefix: str) -> dict[str, str]:
    """The environment of a stack on private topics (created here), data and outbox in `tmp`."""
    topics = {
        f"TOPIC_{k.upper()}": f"{prefix}.{k}"
        for k in ("user_registered", "comment_liked", "mailing", "dead_letter")
    }
    ensure_topics(settings, list(topics.values()), partitions=4)
    return {
        **os.environ,
        **topics,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": settings.database_url,
        "FAUST_APP_ID": prefix,
        "FAUST_DATA_DIR": str(tmp / "faust"),
        "FAUST_SESSION_TIMEOUT_S": "6",
        "OUTBOX_DIR": str(tmp / "outbox"),
        "FAUST_WEB_PORT": str(free_port()),
    }


@contextmanager
def procfile(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Every process of the Procfile under honcho; all of them stopped on the way out."""
    with log.open("wb") as out:
        honcho = subprocess.Popen(
            [str(BIN / "honcho"), "-f", "Procfile", "start"],
            env=env,
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield honcho
    finally:
        os.killpg(honcho.pid, signal.SIGTERM)
        try:
            honcho.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(honcho.pid, signal.SIGKILL)
            honcho.wait(10)
        time.sleep(1)  # let the ports go before the next test binds them
