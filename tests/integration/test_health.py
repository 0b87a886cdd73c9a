"""/healthz turns 503 while a process restarts in a loop under scripts/forever.sh."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from app.config import REPO_ROOT
from app.core.health import CRASH_LOOP_STARTS, STABLE_AFTER_S, crash_loop
from harness.waiting import free_port, wait_for

pytestmark = pytest.mark.integration


def test_the_rule() -> None:
    assert crash_loop(1, 0.0) is None
    assert crash_loop(CRASH_LOOP_STARTS - 1, 1.0) is None
    assert "restarting in a loop" in (crash_loop(CRASH_LOOP_STARTS, 1.0) or "")
    assert crash_loop(CRASH_LOOP_STARTS, STABLE_AFTER_S + 1) is None  # it settled


def _health(port: int) -> tuple[int, dict[str, str]] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        try:
            return error.code, json.load(error)
        except (http.client.HTTPException, ValueError):
            return None  # the process exited while answering
    except (OSError, http.client.HTTPException, ValueError):
        # Between two starts, or an answer cut off by the exit (SystemExit ends the serving
        # daemon thread mid-write): neither is a report, so keep asking.
        return None


def test_a_process_that_keeps_crashing_reports_it_on_healthz() -> None:
    port = free_port()
    # A process serving the same /healthz as every Celery process, crashing after 1.5 s.
    crashing = (
        "import time; from app.core.metrics import serve; "
        f"serve({port}); time.sleep(1.5); raise SystemExit(3)"
    )
    loop = subprocess.Popen(
        ["bash", str(REPO_ROOT / "scripts" / "forever.sh"), sys.executable, "-c", crashing],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )

    def reports_the_loop() -> tuple[int, dict[str, str]] | None:
        health = _health(port)
        return health if health and health[0] == 503 else None

    try:
        first = wait_for(lambda: _health(port), timeout=30, what="the first start's /healthz")
        assert first == (200, {"status": "ok"})
        status, body = wait_for(
            reports_the_loop,
            timeout=60,
            what="/healthz to report the loop",
        )
        assert "restarting in a loop" in body["reason"]
    finally:
        os.killpg(loop.pid, signal.SIGTERM)
        loop.wait(10)
