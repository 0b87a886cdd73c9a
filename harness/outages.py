"""Real outages of the local services, for tests that prove an outage only delays work.

The service stack runs on this machine (`scripts/services.sh`), so a test can stop a server
outright and start it again, as an operator or a crash would.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text

from harness.waiting import wait_for


def _postgres_cluster(port: int = 5432) -> tuple[str, str]:
    """Debian's (version, cluster name) of the PostgreSQL cluster on `port`."""
    listing = subprocess.run(
        ["pg_lsclusters", "-h"], check=True, capture_output=True, text=True
    ).stdout
    for line in listing.splitlines():
        version, cluster, cluster_port, *_ = line.split()
        if int(cluster_port) == port:
            return version, cluster
    raise AssertionError(f"no PostgreSQL cluster on port {port}: {listing!r}")


def _postgres_answers(url: str) -> bool:
    engine = create_engine(url, pool_pre_ping=True)
    try:
        with engine.connect() as conn:
            answer: int = conn.execute(text("SELECT 1")).scalar_one()
            return answer == 1
    except Exception:  # noqa: BLE001 - not up yet
        return False
    finally:
        engine.dispose()


@contextmanager
def postgres_down(database_url: str, seconds: float) -> Iterator[None]:
    """Stop PostgreSQL (fast shutdown: every connection is cut), keep it down, start it again."""
    version, cluster = _postgres_cluster()
    subprocess.run(["pg_ctlcluster", version, cluster, "stop", "-m", "fast"], check=True)
    stopped = time.monotonic()
    try:
        assert not _postgres_answers(database_url)
        yield
        time.sleep(max(0.0, seconds - (time.monotonic() - stopped)))
    finally:
        subprocess.run(["pg_ctlcluster", version, cluster, "start"], check=True)
        wait_for(lambda: _postgres_answers(database_url), timeout=60, what="PostgreSQL back")
