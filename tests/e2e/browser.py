"""A real browser for the e2e tests: Debian's Chromium driven by Playwright's async API (the
sync API would block the event loop that also runs the worker). Never downloads a browser.

`require_browser()` at the top of a test module skips it, with the reason, where either is
missing; CI installs both and sets REQUIRE_BROWSER_TESTS=1, which turns the skip into a
failure (`.ci/run`).
"""

from __future__ import annotations

import importlib
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def require_browser() -> Any:
    """Playwright's async API, or the module skipped (failed under REQUIRE_BROWSER_TESTS=1)."""
    try:
        async_api = importlib.import_module("playwright.async_api")
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[dev]')")
    if shutil.which("chromium") is None:
        _missing("chromium is not installed (apt-get install chromium)")
    return async_api


def _missing(reason: str) -> None:
    # CI sets this: there a missing browser is a broken setup, not a reason to skip.
    if os.environ.get("REQUIRE_BROWSER_TESTS") == "1":
        pytest.fail(f"{reason}, and REQUIRE_BROWSER_TESTS=1", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


@asynccontextmanager
async def browser_page(async_api: Any) -> AsyncIterator[Any]:
    """A new page in a fresh headless Chromium."""
    async with async_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS
        )
        try:
            yield await browser.new_page()
        finally:
            await browser.close()
