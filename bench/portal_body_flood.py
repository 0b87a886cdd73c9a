"""Benchmark: the portal's memory while anonymous clients post huge bodies to /login.

Starts `notify portal` (uvicorn, one process) on a free local port, takes its resident memory at
rest, then has `--clients` clients post `--mib` MiB each to /login at once, chunked (no
Content-Length, so nothing can refuse them by the header), and samples the process's RSS every
10 ms until every client has its answer. Prints the resting RSS, the peak (VmHWM) and the
answers. With `--before DIR` the same runs against the code in DIR (an older checkout) first.

The floor, in the same run: the same portal answering the same clients' GET /login, no body.

    .venv/bin/python bench/portal_body_flood.py --before /tmp/old
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHUNK = b"a" * 65536
BENCH_DB = "postgresql+psycopg2://notify:notify@127.0.0.1:5432/notify_test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def post_chunked(port: int, mib: int, answers: list[str]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.putrequest("POST", "/login")
        conn.putheader("Content-Type", "application/x-www-form-urlencoded")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        for _ in range(mib * 16):
            conn.send(b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK))
        conn.send(b"0\r\n\r\n")
        answers.append(str(conn.getresponse().status))
    except OSError as exc:  # the portal answered and closed before the body was all sent
        try:
            answers.append(f"{conn.getresponse().status} (closed early)")
        except (OSError, http.client.HTTPException):
            answers.append(f"connection closed: {type(exc).__name__}")
    finally:
        conn.close()


def get_login(port: int, answers: list[str]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", "/login")
    answers.append(str(conn.getresponse().status))
    conn.close()


def run(tree: Path, clients: int, mib: int, label: str) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "DEV_MODE": "true",
        "DATABASE_URL": os.environ.get("BENCH_DATABASE_URL", BENCH_DB),
    }
    portal = subprocess.Popen(
        [sys.executable, "-c", "from app.cli import main; main()", "portal", "--port", str(port)],
        cwd=tree,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        for work, name in ((get_login, "GET /login (floor)"), (post_chunked, f"POST {mib} MiB")):
            floor_answers: list[str] = []
            get_login(port, floor_answers)  # warm: templates loaded, first session made
            rest = status_kib(portal.pid, "VmRSS")
            answers: list[str] = []
            args = (port, answers) if work is get_login else (port, mib, answers)
            threads = [threading.Thread(target=work, args=args) for _ in range(clients)]
            peak, started = rest, time.perf_counter()
            for thread in threads:
                thread.start()
            while any(t.is_alive() for t in threads):
                peak = max(peak, status_kib(portal.pid, "VmRSS"))
                time.sleep(0.01)
            seconds = time.perf_counter() - started
            answered = ", ".join(f"{n}x {a}" for a, n in Counter(answers).items())
            print(
                f"| {label} | {clients} x {name} | {rest / 1024:.0f} | {peak / 1024:.0f} | "
                f"{(peak - rest) / 1024:.0f} | {seconds:.2f} | {answered} |",
                flush=True,
            )
    finally:
        portal.terminate()
        portal.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="an older checkout to measure first")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--mib", type=int, default=10)
    args = parser.parse_args()
    print(
        "| code | requests | RSS at rest MiB | peak RSS MiB | growth MiB | seconds | answers |\n"
        "|---|---|---|---|---|---|---|"
    )
    if args.before:
        run(args.before, args.clients, args.mib, "before")
    run(REPO, args.clients, args.mib, "after")


if __name__ == "__main__":
    main()
