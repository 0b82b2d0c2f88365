"""The client's cache against an in-memory service: what is cached, revalidated, dropped."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import pytest

from entitlements_client import Entitlements, EntitlementsClient, EntitlementsUnavailable
from tests.conftest import wait_for
from tests.entitlements_client.conftest import FakeClock
from tests.entitlements_client.fake_service import FakeService

READS = "/v1/accounts/acct_1/entitlements"


@pytest.fixture
def service() -> FakeService:
    return FakeService()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client(service: FakeService, clock: FakeClock) -> Iterator[EntitlementsClient]:
    with EntitlementsClient(
        "http://billing.test",
        "token",
        wait_seconds=1,
        stale_after_seconds=60,
        backoff_seconds=(0.01, 0.05),
        clock=clock,
        make_transport=service.transport,
    ) as client:
        yield client


async def connected(client: EntitlementsClient) -> None:
    await wait_for(lambda: client.cursor is not None and client.connected, what="feed connected")


async def test_the_feed_keeps_a_read_account_current_without_more_reads(
    client: EntitlementsClient, service: FakeService
) -> None:
    await connected(client)
    first = client.get("acct_1")
    assert (first.version, first.plan, first.stale) == (0, "free", False)
    assert not client.has_feature("acct_1", "api_access")

    service.change("acct_1", 1, "pro")
    await wait_for(lambda: client.get("acct_1").version == 1, what="the change in the cache")

    assert client.has_feature("acct_1", "api_access")
    assert client.limit("acct_1", "projects") == 50
    assert client.limit("acct_1", "no_such_limit") is None
    assert len(service.requests_to(READS)) == 1


async def test_changes_of_accounts_never_read_are_not_kept(
    client: EntitlementsClient, service: FakeService
) -> None:
    await connected(client)
    service.change("acct_other", 1, "team")
    await wait_for(lambda: client.cursor == 1, what="the feed past the change")

    assert client.get("acct_other").plan == "team"
    assert len(service.requests_to("/v1/accounts/acct_other/entitlements")) == 1


async def test_before_the_feed_connects_reads_are_answered_but_not_cached(
    service: FakeService, clock: FakeClock
) -> None:
    service.feed_up = False
    with EntitlementsClient(
        "http://billing.test",
        "token",
        backoff_seconds=(0.01, 0.05),
        clock=clock,
        make_transport=service.transport,
    ) as client:
        client.get("acct_1")
        client.get("acct_1")
        assert len(service.requests_to(READS)) == 2

        service.feed_up = True
        await connected(client)
        client.get("acct_1")
        client.get("acct_1")
        assert len(service.requests_to(READS)) == 3


async def test_a_stale_entry_is_revalidated_with_its_etag(
    client: EntitlementsClient, service: FakeService, clock: FakeClock
) -> None:
    await connected(client)
    service.change("acct_1", 1, "pro")
    client.get("acct_1")
    service.feed_up = False
    await wait_for(lambda: not client.connected, what="the feed to notice it is down")
    clock.advance(120)

    answer = client.get("acct_1")

    last_read = service.requests_to(READS)[-1]
    assert last_read.headers["If-None-Match"] == service.etag("acct_1")
    assert (answer.version, answer.stale, answer.age_seconds) == (1, False, 0)


async def test_with_the_service_down_the_last_known_state_is_served_with_its_age(
    client: EntitlementsClient, service: FakeService, clock: FakeClock
) -> None:
    await connected(client)
    service.change("acct_1", 1, "pro")
    await wait_for(lambda: client.get("acct_1").version == 1, what="the change in the cache")
    service.feed_up = service.api_up = False
    await wait_for(lambda: not client.connected, what="the feed to notice it is down")
    clock.advance(120)

    answer = client.get("acct_1")

    assert (answer.plan, answer.stale) == ("pro", True)
    assert answer.age_seconds >= 120
    with pytest.raises(EntitlementsUnavailable):
        client.get("acct_never_seen")


async def test_a_cursor_the_service_no_longer_knows_drops_the_cache_and_starts_over(
    client: EntitlementsClient, service: FakeService
) -> None:
    await connected(client)
    service.change("acct_1", 1, "pro")
    await wait_for(lambda: client.get("acct_1").version == 1, what="the change in the cache")
    await wait_for(lambda: client.cursor == 1, what="the feed past the change")
    reads = len(service.requests_to(READS))

    service.forget_changes()
    await wait_for(lambda: client.cursor == 0, what="the client to start over")

    assert client.get("acct_1").version == 1
    assert len(service.requests_to(READS)) == reads + 1


def test_the_documented_example_uses_what_the_client_has() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "entitlements_client.md").read_text()
    example = doc.split("```python\n", 1)[1].split("```", 1)[0]
    compile(example, "docs/entitlements_client.md", "exec")
    called = set(re.findall(r"entitlements\.(\w+)\(", example))
    called |= set(re.findall(r"current\.(\w+)", example))
    known = set(dir(EntitlementsClient)) | set(dir(Entitlements))
    known |= {field.name for field in fields(Entitlements)}
    assert called <= known, called - known
