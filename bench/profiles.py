"""Profiles for the benches: py-spy samples of a running process, and their top functions.

`record(pid, seconds, path)` samples the process with py-spy (GIL-holding, non-idle samples) into
`path` in collapsed-stack form (one "frame;frame;... count" line per stack, what flame graph
tools and speedscope read), and writes `path` with `.txt` next to it: the functions holding the
most samples, inclusive and self.

    .venv/bin/python bench/profiles.py docs/profiles/emails-before.collapsed.gz   # summary again
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

PY_SPY = Path(sys.executable).parent / "py-spy"
TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (None once the process is gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far; 0.0 once it is gone."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / TICKS if fields else 0.0


def _parents() -> dict[int, int]:
    """Every live process's parent."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))):
            parents[int(entry.name)] = int(fields[1])
    return parents


def tree_cpu_seconds(root: int, parents: dict[int, int] | None = None) -> float:
    """CPU seconds of a process and all its descendants, the exited ones included.

    A process that exited and was waited for is in its parent's cutime/cstime: summing only the
    live processes would lose, say, every PostgreSQL backend that closed during the run.
    """
    parents = _parents() if parents is None else parents
    fields = _stat(root)
    if not fields:
        return 0.0
    own = sum(int(f) for f in fields[11:15]) / TICKS  # utime, stime, cutime, cstime
    children = [pid for pid, parent in parents.items() if parent == root]
    return own + sum(tree_cpu_seconds(child, parents) for child in children)


def service_cpu_seconds(markers: dict[str, str]) -> dict[str, float]:
    """CPU seconds of each service named by a command-line marker, its whole process tree.

    The service's roots are its processes whose parent is not one of its own (the postmaster,
    not each backend), so nothing is counted twice.
    """
    parents = _parents()
    matching: dict[str, set[int]] = {name: set() for name in markers}
    for pid in parents:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        for name, marker in markers.items():
            if marker in cmdline:
                matching[name].add(pid)
    return {
        name: sum(tree_cpu_seconds(pid, parents) for pid in pids if parents.get(pid) not in pids)
        for name, pids in matching.items()
    }


def start(
    pid: int, seconds: float, path: Path, subprocesses: bool = False
) -> subprocess.Popen[bytes]:
    """Start sampling `pid` for `seconds` into `path`; wait() on the result, then summarize().

    `subprocesses`: its children too (a Celery worker's pool, a wrapper's command).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        str(PY_SPY),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(int(seconds)),
        "--rate",
        "200",
        "--gil",  # only the thread holding the GIL: where Python time goes, not waits
        "--format",
        "raw",
        "--output",
        str(path),
        "--nonblocking",
        *(["--subprocesses"] if subprocesses else []),
    ]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _frame(raw: str) -> str:
    # py-spy frames read "function (path/to/file.py:line)": keep function and file, not the line.
    name, _, where = raw.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "python3.11/", "/work/main/", "/tmp/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})"


def summarize(path: Path, top: int = 30) -> str:
    """The functions with the most samples, inclusive and self, as a text table (also saved)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    for line in raw.decode().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";")]
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    lines = [f"{total} samples (GIL holder, 200 Hz) from {path.name}", "", "inclusive:"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    lines += ["", "self:"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    text = "\n".join(lines) + "\n"
    path.with_name(path.name.removesuffix(".gz")).with_suffix(".txt").write_text(text)
    return text


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(summarize(Path(name)))
