from __future__ import annotations

from dataclasses import fields, replace
from datetime import UTC, datetime
from uuid import uuid4

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from db import repository
from domain.catalog import default_catalog
from domain.entitlements import AccountEntitlements, Entitlements, ScheduledPlan, free_entitlements
from tests.api.conftest import ADMIN_TOKEN, APP_TOKEN, ClientFactory
from tests.conftest import wait_for

pytestmark = pytest.mark.db

AUTH = {"Authorization": f"Bearer {APP_TOKEN}"}
PERIOD_END = datetime(2027, 1, 31, 12, 30, tzinfo=UTC)


def new_account() -> str:
    return f"acct_{uuid4().hex[:12]}"


def url(account_id: str) -> str:
    return f"/v1/accounts/{account_id}/entitlements"


def pro() -> Entitlements:
    return replace(
        free_entitlements(default_catalog()),
        billing_state="active",
        effective_state="active",
        plan="pro",
        interval="month",
        message=None,
        period_ends_at=PERIOD_END,
    )


def store(sessions: sessionmaker[Session], account_id: str, version: int) -> None:
    with sessions.begin() as session:
        repository.write_entitlements(session, account_id, version, pro(), {}, "test", [])


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {ADMIN_TOKEN}"}],
    ids=["no-token", "wrong-token", "admin-token"],
)
async def test_requires_the_app_token(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await client.get(url(new_account()), headers=headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_unknown_account_gets_the_free_plan(client: httpx.AsyncClient) -> None:
    account_id = new_account()

    response = await client.get(url(account_id), headers=AUTH)

    assert response.status_code == 200
    body = response.json()
    free = free_entitlements(default_catalog())
    assert body["account_id"] == account_id
    assert body["version"] == 0
    assert (body["billing_state"], body["plan"], body["access"]) == ("free", "free", "full")
    assert body["features"] == free.features and body["limits"] == free.limits
    assert body["message"] == "upgrade_prompt"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["ETag"].startswith('"')


async def test_stored_entitlements_are_answered(
    client: httpx.AsyncClient, session_factory: sessionmaker[Session]
) -> None:
    account_id = new_account()
    store(session_factory, account_id, 4)

    response = await client.get(url(account_id), headers=AUTH)

    assert response.status_code == 200
    assert response.json() == repository.entitlement_document(account_id, 4, pro())
    assert response.json()["period_ends_at"] == "2027-01-31T12:30:00Z"


@pytest.mark.parametrize("stored", [False, True], ids=["free", "stored"])
async def test_the_answer_keys_come_in_the_entitlements_order(
    client: httpx.AsyncClient, session_factory: sessionmaker[Session], stored: bool
) -> None:
    account_id = new_account()
    if stored:
        downgrade = ScheduledPlan("free", "month", 1, PERIOD_END)
        with session_factory.begin() as session:
            entitlements = replace(pro(), pending_change=downgrade)
            repository.write_entitlements(session, account_id, 1, entitlements, {}, "test", [])

    body = (await client.get(url(account_id), headers=AUTH)).json()

    assert list(body) == [field.name for field in fields(AccountEntitlements)]
    if stored:
        assert list(body["pending_change"]) == [field.name for field in fields(ScheduledPlan)]


async def test_the_openapi_names_of_the_answer(client: httpx.AsyncClient) -> None:
    """Generated clients name their types after these."""
    spec = (await client.get("/openapi.json")).json()

    schemas = spec["components"]["schemas"]
    ok = spec["paths"]["/v1/accounts/{account_id}/entitlements"]["get"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/EntitlementsAnswer"
    }
    answer = schemas["EntitlementsAnswer"]
    assert list(answer["properties"]) == [field.name for field in fields(AccountEntitlements)]
    assert answer["required"] == list(answer["properties"])[:-1]
    assert {"$ref": "#/components/schemas/ScheduledPlanAnswer"} in answer["properties"][
        "pending_change"
    ]["anyOf"]
    assert list(schemas["ScheduledPlanAnswer"]["properties"]) == [
        field.name for field in fields(ScheduledPlan)
    ]


async def test_etag_revalidation(
    client: httpx.AsyncClient, session_factory: sessionmaker[Session]
) -> None:
    account_id = new_account()
    store(session_factory, account_id, 1)
    first = await client.get(url(account_id), headers=AUTH)
    etag = first.headers["ETag"]

    unchanged = await client.get(url(account_id), headers={**AUTH, "If-None-Match": etag})
    weak_or_listed = await client.get(
        url(account_id), headers={**AUTH, "If-None-Match": f'"other", W/{etag}'}
    )
    store(session_factory, account_id, 2)

    async def revalidated() -> httpx.Response | None:
        response = await client.get(url(account_id), headers={**AUTH, "If-None-Match": etag})
        return response if response.status_code != 304 else None

    changed = await wait_for(revalidated, within=5, what="the new version to be served")

    assert unchanged.status_code == weak_or_listed.status_code == 304
    assert unchanged.content == b""
    assert unchanged.headers["ETag"] == etag
    assert unchanged.headers["Cache-Control"] == "no-cache"
    assert changed.status_code == 200
    assert changed.json()["version"] == 2
    assert changed.headers["ETag"] != etag


async def test_etag_differs_between_accounts(client: httpx.AsyncClient) -> None:
    first = await client.get(url(new_account()), headers=AUTH)
    second = await client.get(url(new_account()), headers=AUTH)

    assert first.headers["ETag"] != second.headers["ETag"]


@pytest.mark.parametrize(
    "account_id", ["has space", "x" * 129, "semi;colon", "ümlaut"], ids=str.__len__
)
async def test_invalid_account_id_is_422(client: httpx.AsyncClient, account_id: str) -> None:
    response = await client.get(url(account_id), headers=AUTH)

    assert response.status_code == 422


async def test_answers_while_temporal_is_unreachable(
    make_client: ClientFactory, session_factory: sessionmaker[Session]
) -> None:
    account_id = new_account()
    store(session_factory, account_id, 3)

    # No client passed in: the lazy client points at a port where nothing listens.
    async with make_client(temporal_client=None) as client:
        response = await client.get(url(account_id), headers=AUTH)

    assert response.status_code == 200
    assert response.json()["version"] == 3


async def test_answers_after_the_database_dropped_its_connections(
    client: httpx.AsyncClient, session_factory: sessionmaker[Session], database_url: str
) -> None:
    """As after a PostgreSQL restart: the API's pooled connection is dead (no pre-ping)."""
    if make_url(database_url).get_backend_name() != "postgresql":
        pytest.skip("needs a database server to drop connections: set TEST_DATABASE_URL")
    warm, account_id = new_account(), new_account()
    store(session_factory, account_id, 5)
    assert (await client.get(url(warm), headers=AUTH)).status_code == 200
    with session_factory() as session:
        session.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )

    # Not answered before: the read asks the database, on a connection the pool gives again.
    response = await client.get(url(account_id), headers=AUTH)

    assert response.status_code == 200
    assert response.json()["version"] == 5
