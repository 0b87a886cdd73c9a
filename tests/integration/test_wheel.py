"""An installed wheel carries what the portal serves: the dashboard's script and Chart.js.

The wheel is built by pip, in its own build environment, from a copy of the working tree as
`make install` left it (the assets copied from npm). It is installed without its dependencies
in a scratch virtualenv and run from there, the project's virtualenv lending the dependencies:
the package under test is the installed one.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

from app.config import REPO_ROOT

SKIPPED = shutil.ignore_patterns(
    ".venv*", "var", "node_modules", ".git", "*.egg-info", "build", "__pycache__", ".*_cache"
)

SERVE = """
import app
from fastapi import FastAPI
from fastapi.testclient import TestClient
from app.portal import dashboard

print(app.__file__)
served = FastAPI()
served.include_router(dashboard.router)
client = TestClient(served)
for name in ("chart.umd.min.js", "dashboard.js"):
    response = client.get(f"/admin/assets/{name}")
    print(name, response.status_code, len(response.content))
"""


def test_an_installed_wheel_serves_the_chart_library(tmp_path: Path) -> None:
    source = tmp_path / "source"
    shutil.copytree(REPO_ROOT, source, ignore=SKIPPED)
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "dist").glob("*.whl"))

    scratch = tmp_path / "scratch"
    venv.create(scratch, with_pip=False)
    python = scratch / "bin" / "python"
    target = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", target, str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stderr

    lent = os.pathsep.join(site.getsitepackages())  # the dependencies, not our package
    env = {**os.environ, "PYTHONPATH": lent, "DEV_MODE": "true"}
    ran = subprocess.run(
        [str(python), "-c", SERVE],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    where, chart, script = ran.stdout.strip().splitlines()[-3:]
    assert where.startswith(target), where  # the installed copy, not the working tree
    name, status, size = chart.split(" ")
    library = REPO_ROOT / "app/portal/assets/node_modules/chart.js/dist/chart.umd.min.js"
    assert (name, status, int(size)) == ("chart.umd.min.js", "200", library.stat().st_size)
    assert script.split(" ")[:2] == ["dashboard.js", "200"], script
