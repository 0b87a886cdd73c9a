"""The portal's home: the pipeline's health at a glance, refreshed in place.

`GET /admin/api/dashboard` answers what app/jobs/dashboard.py gathers: mails sent / failed /
skipped per hour over the last 24 h and dead letters by reason; the stream's lag per partition;
the depth of the `emails` and `jobs` queues; every dependency's circuit and the provider
failover; the next beat runs; the latest planning runs with their shards' progress. The home
page draws it with Chart.js, served from the portal itself (`/admin/assets/`), and fetches it
again every few seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from app.core.clock import utcnow
from app.jobs.dashboard import Dashboard
from app.portal.pages import render_page

router = APIRouter()

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
# The files /admin/assets/ serves, by name: the portal's stylesheet, the dashboard's script and
# the chart library from npm (copied to vendor/ by `make install`, so the package carries it).
ASSETS = {
    "portal.css": ASSETS_DIR / "portal.css",
    "dashboard.js": ASSETS_DIR / "dashboard.js",
    "chart.umd.min.js": ASSETS_DIR / "vendor" / "chart.umd.min.js",
}
MEDIA_TYPES = {".css": "text/css", ".js": "text/javascript"}


def dashboard_of(request: Request) -> Dashboard:
    state = request.app.state
    if getattr(state, "dashboard", None) is None:
        state.dashboard = Dashboard(state.settings)
    board: Dashboard = state.dashboard
    return board


async def figures(request: Request) -> dict[str, Any]:
    """The dashboard's figures now (the home page renders them, the API returns them)."""
    board = dashboard_of(request)
    return await run_in_threadpool(board.figures, utcnow())


# HEAD too: left to SQLAdmin's own index, a HEAD would render this template without its figures.
@router.api_route("/admin/", methods=["GET", "HEAD"], include_in_schema=False)
async def home(request: Request) -> Response:
    """The portal's home: the dashboard, drawn from the figures of this moment."""
    return await render_page(request, "sqladmin/index.html", {"figures": await figures(request)})


@router.get("/admin/api/dashboard", include_in_schema=False)
async def dashboard_api(request: Request) -> JSONResponse:
    """The dashboard's figures, for the home page's refresh."""
    return JSONResponse(await figures(request), headers={"Cache-Control": "no-store"})


@router.get("/admin/assets/{name}", include_in_schema=False)
async def asset(name: str) -> FileResponse:
    """The portal's stylesheet, the dashboard's script and the chart library."""
    path = ASSETS.get(name)
    if path is None or not path.is_file():
        raise HTTPException(status_code=404, detail="no such asset")
    return FileResponse(
        path, media_type=MEDIA_TYPES[path.suffix], headers={"Cache-Control": "max-age=3600"}
    )
