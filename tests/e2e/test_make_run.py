"""The Procfile under honcho, as `make run` starts it: an outside Auth service, and one crash.

Every process of the local stack runs; the test points AUTH_API_URL at an Auth server of its own
on another port, so the bundled dev Auth server must stay off, and it kills the jobs worker, which
must come back while everything else keeps running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.auth.dev_server import DevAuthServer, generate_users
from app.config import Settings
from harness.auth import serve_in_thread
from harness.procfile import private_env, procfile
from harness.waiting import wait_for


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            status: int = response.status
            return status == 200
    except OSError:
        return False


def _jobs_worker_pids() -> set[int]:
    # The first one's Python process itself, not the scripts/forever.sh loop around it.
    found = subprocess.run(
        ["pgrep", "-f", "python.*bin/notify jobs-worker --name jobs@"],
        capture_output=True,
        text=True,
    )
    return {int(pid) for pid in found.stdout.split()}


@pytest.fixture
def outside_auth(settings: Settings) -> Iterator[str]:
    server = DevAuthServer(
        ("127.0.0.1", 0), generate_users(5), settings.auth_api_token.get_secret_value()
    )
    serve_in_thread(server)
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_make_run_uses_an_outside_auth_and_survives_a_crashed_process(
    settings: Settings, outside_auth: str, tmp_path: Path
) -> None:
    env = {
        **private_env(settings, tmp_path, f"run{uuid.uuid4().hex[:8]}"),
        "AUTH_API_URL": outside_auth,
    }
    assert not _answers("http://127.0.0.1:8081/health")  # nothing of ours there yet
    log = tmp_path / "honcho.log"
    with procfile(env, log) as honcho:
        text = lambda: log.read_text("utf-8", "replace")  # noqa: E731
        wait_for(lambda: _answers("http://127.0.0.1:8000/healthz"), timeout=90, what="portal")
        wait_for(lambda: _answers("http://127.0.0.1:9101/healthz"), timeout=90, what="jobs")
        wait_for(lambda: "the dev Auth server stays off" in text(), timeout=30, what="auth idle")
        assert not _answers("http://127.0.0.1:8081/health")

        [first] = wait_for(_jobs_worker_pids, timeout=30, what="the jobs worker's pid")
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: "starting it again" in text(), timeout=30, what="the restart")
        back = wait_for(lambda: _jobs_worker_pids() - {first}, timeout=60, what="a new worker")
        wait_for(lambda: _answers("http://127.0.0.1:9101/healthz"), timeout=90, what="jobs back")
        assert honcho.poll() is None, text()[-3000:]
        assert _answers("http://127.0.0.1:8000/healthz") and _answers(
            "http://127.0.0.1:9102/healthz"
        )
        # Both e-mail worker processes, each on its own metrics port.
        wait_for(lambda: _answers("http://127.0.0.1:9104/healthz"), timeout=60, what="emails-2")
        assert len(back) == 1
