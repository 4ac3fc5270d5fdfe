"""Fixtures of the end-to-end tests: headless Debian Chromium for the browser tests (nothing downloads a browser)."""

import asyncio
import contextlib
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
INSTALL_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "install-chromium.sh"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def ensure_chromium() -> None:
    """Install Debian's chromium if missing; skip only when it cannot be installed, and never on CI."""
    if CHROMIUM.exists():
        return
    result = subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, check=False)
    if CHROMIUM.exists():
        return
    reason = f"chromium is absent and {INSTALL_SCRIPT.name} could not install it: {result.stderr[-500:]}"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


# True once every image of a gallery grid within the viewport has loaded: a page's first screen, as a user sees it.
VISIBLE_IMAGES_LOADED = """() => {
  const shown = Array.from(document.querySelectorAll('#grid img')).filter((img) => {
    const r = img.getBoundingClientRect();
    return r.top < window.innerHeight && r.bottom > 0;
  });
  return shown.length > 0 && shown.every((img) => img.complete && img.naturalWidth > 0);
}"""


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Launch the headless Chromium the browser tests use (installed first if missing) and close it after."""
    await asyncio.to_thread(ensure_chromium)
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched
