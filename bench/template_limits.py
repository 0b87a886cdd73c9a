"""Benchmark: what hostile templates cost, and what the render limits cost every mail.

Two parts, in one run:

1. **Probes.** Each hostile template is rendered in a fresh Python process (so its peak
   memory is its own), under a 4 GiB address-space limit so a probe that would take the machine
   down ends in MemoryError instead; wall time, peak RSS and the outcome are printed. With
   `--before DIR` the same probes run against the code in DIR too (a checkout of an older
   revision), side by side.

2. **Cost per render** of the shipped templates (welcome, likes_digest, mailing), medians of
   `--runs` rounds of `--renders` renders, three ways:
   - the floor: the same templates in plain Jinja (no sandbox, no limits);
   - in process, with the checks the service ships (app/domain/render_limits.py);
   - in a pool of worker processes under `resource` limits (address space and CPU seconds),
     the other way to bound renders: each render a round trip to a worker.

    .venv/bin/python bench/template_limits.py --before /tmp/old
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from jinja2 import Environment  # noqa: E402

from app.domain.rendering import SAMPLE_VARIABLES, render  # noqa: E402

PROBES = {
    "ljust(3*10**8)": '{{ "x".ljust(3*10**8) }}',
    "join on a large range": "{% set s = 'x' * 100000 %}{{ range(100000)|join(s[:3000]) }}",
    "gated ljust(2*10**8), save check": (
        '{% if email != "ann@example.com" %}{{ "x".ljust(2*10**8) }}{% endif %}ok'
    ),
    "gated ljust(2*10**8), a real recipient": (
        '{% if email != "ann@example.com" %}{{ "x".ljust(2*10**8) }}{% endif %}ok'
    ),
    "list of one string x100000, written": "{% set s = 'x' * 3000 %}{{ [s] * 100000 }}",
}
PROBE_LIMIT_BYTES = 4 * 1024**3

PROBE_CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
    from app.domain.rendering import SAMPLE_VARIABLES, TemplateInvalid, check_template, render
    body, mode = sys.argv[1], sys.argv[2]
    recipient = {{**SAMPLE_VARIABLES, "email": "bob@example.org"}}
    started = time.perf_counter()
    try:
        if mode == "check":
            check_template("s", body, "t")
        else:
            render(subject="s", body_html=body, body_text="t", variables=recipient)
        outcome = "rendered"
    except TemplateInvalid as exc:
        outcome = "refused: " + str(exc)[:70]
    except MemoryError:
        outcome = "MemoryError (over 4 GiB)"
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({{"outcome": outcome, "seconds": seconds, "peak_mib": peak}}))
    """
)


def run_probe(tree: Path, body: str, mode: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree), "DEV_MODE": "true"}
    code = PROBE_CHILD.format(limit=PROBE_LIMIT_BYTES)
    done = subprocess.run(
        [sys.executable, "-c", code, body, mode],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        return {
            "outcome": f"exit {done.returncode}: {done.stderr[-80:]}",
            "seconds": 0,
            "peak_mib": 0,
        }
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def probes(trees: dict[str, Path]) -> None:
    print("\n## Probes (a fresh process each; peak RSS includes the interpreter, ~25 MiB)\n")
    print("| probe | code | outcome | seconds | peak MiB |\n|---|---|---|---|---|")
    for name, body in PROBES.items():
        mode = "check" if "save check" in name else "render"
        for label, tree in trees.items():
            got = run_probe(tree, body, mode)
            print(
                f"| {name} | {label} | {got['outcome']} | {got['seconds']:.3f} | "
                f"{got['peak_mib']:.0f} |",
                flush=True,
            )


# --- cost per render ------------------------------------------------------------------------


def shipped_templates() -> list[tuple[str, str, str, dict[str, Any]]]:
    out = []
    for kind in ("welcome", "likes_digest", "mailing"):
        folder = REPO / "templates" / kind
        parts = [(folder / name).read_text() for name in ("subject.txt", "body.html", "body.txt")]
        out.append((parts[0], parts[1], parts[2], {**SAMPLE_VARIABLES, "count": 3}))
    return out


def plain_renderer() -> Callable[[str, str, str, dict[str, Any]], Any]:
    html_env, text_env = Environment(autoescape=True), Environment(autoescape=False)
    cache: dict[tuple[str, bool], Any] = {}

    def compiled(source: str, html: bool) -> Any:
        key = (source, html)
        if key not in cache:
            cache[key] = (html_env if html else text_env).from_string(source)
        return cache[key]

    def render_plain(
        subject: str, body_html: str, body_text: str, variables: dict[str, Any]
    ) -> Any:
        return (
            compiled(subject, False).render(variables),
            compiled(body_html, True).render(variables),
            compiled(body_text, False).render(variables),
        )

    return render_plain


def limited_renderer(
    subject: str, body_html: str, body_text: str, variables: dict[str, Any]
) -> Any:
    return render(subject=subject, body_html=body_html, body_text=body_text, variables=variables)


def _limit_worker() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (1024**3, 1024**3))
    resource.setrlimit(resource.RLIMIT_CPU, (600, 600))


def _render_in_worker(args: tuple[str, str, str, dict[str, Any]]) -> Any:
    email = render(subject=args[0], body_html=args[1], body_text=args[2], variables=args[3])
    return email.subject, email.html, email.text


def time_renders(render_one: Callable[..., Any], renders: int) -> float:
    templates = shipped_templates()
    started = time.perf_counter()
    for n in range(renders):
        render_one(*templates[n % len(templates)])
    return (time.perf_counter() - started) / renders * 1e6


def time_pool(pool: ProcessPoolExecutor, renders: int) -> float:
    templates = shipped_templates()
    started = time.perf_counter()
    for n in range(renders):
        pool.submit(_render_in_worker, templates[n % len(templates)]).result()
    return (time.perf_counter() - started) / renders * 1e6


def costs(runs: int, renders: int) -> None:
    plain = plain_renderer()
    floor, limited, pooled = [], [], []
    with ProcessPoolExecutor(max_workers=1, initializer=_limit_worker) as pool:
        pool.submit(_render_in_worker, shipped_templates()[0]).result()  # started and warm
        for _ in range(runs):
            floor.append(time_renders(plain, renders))
            limited.append(time_renders(limited_renderer, renders))
            pooled.append(time_pool(pool, renders))
    f, lim, pool_us = (statistics.median(x) for x in (floor, limited, pooled))
    print(f"\n## Cost per render of the shipped templates (median of {runs} x {renders})\n")
    print("| way | µs per render | ratio to the floor |\n|---|---|---|")
    print(f"| plain Jinja, no sandbox (floor) | {f:.1f} | 1.00 |")
    print(f"| sandbox with the size checks, in process (shipped) | {lim:.1f} | {lim / f:.2f} |")
    print(f"| sandbox in a worker process under rlimits | {pool_us:.1f} | {pool_us / f:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="an older checkout to run the probes on too")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--renders", type=int, default=2000)
    parser.add_argument("--no-probes", action="store_true")
    args = parser.parse_args()
    trees = {"before": args.before} if args.before else {}
    trees["after"] = REPO
    if not args.no_probes:
        probes(trees)
    costs(args.runs, args.renders)


if __name__ == "__main__":
    main()
