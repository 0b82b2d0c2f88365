"""A thin async client over the admin API, for the CLI and for scripts.

Answers are the API's JSON as plain dicts; any 4xx/5xx, or no answer at all, raises
`AdminApiError` carrying the API's own message.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
TIMEOUT_SECONDS = 60.0


class AdminApiError(Exception):
    """The API refused or failed the request; `status` is 0 when it could not be reached."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status
        self.message = message


class AdminClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=TIMEOUT_SECONDS,
            transport=transport,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._http.aclose()

    async def show(self, account_id: str) -> dict[str, Any]:
        return await self._call("GET", f"/admin/accounts/{account_id}")

    async def list_accounts(
        self, *, state: str | None = None, limit: int = 50, after: str | None = None
    ) -> dict[str, Any]:
        params: dict[str, str | int] = {"limit": limit}
        if state is not None:
            params["state"] = state
        if after is not None:
            params["after"] = after
        return await self._call("GET", "/admin/accounts", params=params)

    async def act(
        self,
        account_id: str,
        action: str,
        *,
        actor: str,
        reason: str,
        plan: str | None = None,
        until: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, str] = {"actor": actor, "reason": reason}
        if plan is not None:
            body["plan"] = plan
        if until is not None:
            body["until"] = until
        return await self._call("POST", f"/admin/accounts/{account_id}/actions/{action}", json=body)

    async def unroutable_events(
        self, *, resolved: bool | None = False, customer_id: str | None = None
    ) -> dict[str, Any]:
        params: dict[str, str] = {}
        if resolved is not None:
            params["resolved"] = "true" if resolved else "false"
        if customer_id is not None:
            params["customer_id"] = customer_id
        return await self._call("GET", "/admin/unroutable-events", params=params)

    async def link(
        self, *, customer_id: str, account_id: str, actor: str, reason: str
    ) -> dict[str, Any]:
        body = {
            "customer_id": customer_id,
            "account_id": account_id,
            "actor": actor,
            "reason": reason,
        }
        return await self._call("POST", "/admin/unroutable-events/link", json=body)

    async def _call(self, method: str, path: str, **options: Any) -> dict[str, Any]:
        try:
            response = await self._http.request(method, path, **options)
        except httpx.TransportError as err:
            raise AdminApiError(0, f"cannot reach {self._http.base_url}: {err}") from err
        if response.is_error:
            raise AdminApiError(response.status_code, error_message(response))
        answer: dict[str, Any] = response.json()
        return answer


def error_message(response: httpx.Response) -> str:
    """The API's reason: FastAPI's `detail`, a string or a list of validation errors."""
    try:
        detail = response.json()["detail"]
    except (ValueError, KeyError, TypeError):
        return response.text or response.reason_phrase
    if isinstance(detail, list):
        return "; ".join(_validation_error(item) for item in detail)
    return str(detail)


def _validation_error(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    # ("body", "until") -> "until"; the location's first part only says where in the request.
    where = ".".join(str(part) for part in item.get("loc", [])[1:])
    message = str(item.get("msg", item))
    return f"{where}: {message}" if where else message
