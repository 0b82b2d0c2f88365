"""Driving the support console over HTTP as a browser does: forms with their CSRF token."""

from __future__ import annotations

import re

import httpx


def csrf_of(page: httpx.Response) -> str:
    """The CSRF token the page's forms carry."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match is not None, page.text
    return match.group(1)


async def sign_in(browser: httpx.AsyncClient, token: str, name: str = "") -> None:
    """Sign `browser` in (it keeps the session cookie)."""
    form = await browser.get("/console/sign-in")
    signed_in = await browser.post(
        "/console/sign-in",
        data={"token": token, "name": name, "csrf_token": csrf_of(form), "next": "/console"},
    )
    assert signed_in.status_code == 303, signed_in.text
    assert signed_in.headers["location"] == "/console"
