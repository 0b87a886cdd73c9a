"""What the browser tests share: Debian's Chromium, where screenshots go, and how one is taken."""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from playwright.sync_api import Page, expect

from app.config import REPO_ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = REPO_ROOT / "var" / "screenshots"
MIN_SCREENSHOT_BYTES = 8_000  # a blank page renders to ~3 KB at this size


def shot(page: Page, folder: Path, name: str, heading: str) -> None:
    """Save a full-page screenshot and check the page shows `heading` and is not blank."""
    expect(page.locator("body")).to_contain_text(heading)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > MIN_SCREENSHOT_BYTES, f"{path} looks blank"


def sidebar_column_luma(path: Path, *, x: int = 20) -> tuple[int, int]:
    """The page's height in a full-page screenshot, and the brightness (0-255) of the sidebar's
    column at its last row."""
    with Image.open(path) as image:
        gray = image.convert("L")
        return gray.height, int(gray.getpixel((x, gray.height - 2)))  # type: ignore[arg-type]
