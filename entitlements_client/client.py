"""A thread-safe, synchronous entitlements client with a local cache kept current by the feed.

Sync on purpose: the Dataface app is a typical threaded Python web app, so `get()` is a dict
lookup under a lock, and one background thread follows the long-poll change feed. Only the
service's HTTP API is used (no imports from the service), so the app needs nothing but httpx.

Which accounts are cached: those this process has asked about. The feed carries every
account's changes; applying only the tracked ones keeps memory proportional to the accounts
the process serves, not to all accounts that ever changed.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any

import httpx

log = logging.getLogger(__name__)


class EntitlementsUnavailable(Exception):
    """No copy of the account's entitlements is held and the service cannot be reached."""


class _UnexpectedAnswer(Exception):
    """The service answered, but not with something usable (5xx, 401, …)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        # A 4xx is about this request (a malformed account id, a wrong token), not an outage.
        self.service_side = status is None or status >= 500


class _FeedRejectedCursor(Exception):
    """The service does not know our cursor (its database was restored or replaced)."""


@dataclass(frozen=True)
class Entitlements:
    """One account's entitlements as last known, and how sure we are of them.

    `age_seconds` is how long ago the service last confirmed this is the newest answer (a feed
    answer or an entitlement API read); with a healthy feed it stays below the feed's wait.
    `stale` says it is older than the client's `stale_after_seconds`: the service has been
    unreachable for a while and this is the last known state.
    """

    account_id: str
    version: int
    # The entitlement API's answer: plan, billing_state, access, features, limits, seats, …
    answer: Mapping[str, Any]
    age_seconds: float
    stale: bool

    @property
    def plan(self) -> str:
        return str(self.answer["plan"])

    @property
    def access(self) -> str:
        return str(self.answer["access"])

    def has_feature(self, name: str) -> bool:
        """Unknown features are off."""
        return bool(self.answer.get("features", {}).get(name, False))

    def limit(self, name: str) -> int | None:
        """None when the plan sets no such limit."""
        value = self.answer.get("limits", {}).get(name)
        return None if value is None else int(value)


@dataclass
class _Entry:
    version: int
    answer: dict[str, Any]
    etag: str | None
    # Monotonic time this entry was last confirmed by an entitlement API read.
    checked_at: float


@dataclass
class _FeedState:
    # None until the feed's first answer: before that, nothing fetched can be cached, because a
    # change between the fetch and learning the cursor would never reach us.
    cursor: int | None = None
    # Monotonic time of the last feed answer: it confirms every tracked entry up to then.
    synced_at: float | None = None
    # Bumped when the cache is dropped, so a fetch started before cannot write into the new one.
    generation: int = 0
    connected: bool = False
    # Accounts with an entitlement API read in flight (count per account): the feed keeps
    # their changes too, or one landing between the read and its caching would be lost.
    fetching: dict[str, int] = field(default_factory=dict)


class EntitlementsClient:
    """`get(account_id)` from a local cache that the entitlement change feed keeps current.

    A miss (or an entry gone stale while the feed is down) reads the entitlement API, sending
    `If-None-Match` when an ETag is held. While the service is unreachable, `get()` keeps
    answering the last known state with its age; the feed reconnects with backoff and resumes
    from its cursor, so no change is missed or applied twice.

    Use as a context manager, or call `start()` and `close()`.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        wait_seconds: float = 20.0,
        page_size: int = 500,
        stale_after_seconds: float = 60.0,
        request_timeout_seconds: float = 5.0,
        backoff_seconds: tuple[float, float] = (0.5, 30.0),
        clock: Callable[[], float] = time.monotonic,
        make_transport: Callable[[], httpx.BaseTransport] | None = None,
    ) -> None:
        """`make_transport` builds the httpx transport of each of the client's two connections
        (for mTLS, proxies or tests); `clock` is the monotonic clock ages are measured with."""
        self._base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._wait_seconds = wait_seconds
        self._page_size = page_size
        self._stale_after = stale_after_seconds
        self._timeout = request_timeout_seconds
        self._backoff = backoff_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._feed = _FeedState()
        # After an entitlement API read fails, misses do not try again before this time: a
        # request handler should not wait for a connect timeout on every call.
        self._api_retry_at = float("-inf")
        self._make_transport = make_transport
        # httpx clients are thread-safe: request threads share this one. The feed has its own,
        # so its long poll never holds a connection the reads need.
        self._api = httpx.Client(
            base_url=self._base_url,
            headers=self._headers,
            timeout=request_timeout_seconds,
            transport=make_transport() if make_transport else None,
        )
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._follow_feed, name="entitlements-feed", daemon=True
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> EntitlementsClient:
        self._thread.start()
        return self

    def close(self, timeout: float = 2.0) -> None:
        """Stop following the feed. The thread ends after its current poll (it is a daemon)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._api.close()

    def __enter__(self) -> EntitlementsClient:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- reads -------------------------------------------------------------------------------

    def get(self, account_id: str) -> Entitlements:
        """The account's entitlements: cached, else read from the service.

        Raises `EntitlementsUnavailable` only when nothing is held for the account and the
        service cannot be reached; the caller picks its fallback (e.g. the free plan).
        """
        with self._lock:
            entry = self._entries.get(account_id)
            if entry is not None and not self._is_stale(entry):
                return self._view(account_id, entry)
        try:
            read = self._read_from_api(account_id, entry)
        except (httpx.HTTPError, _UnexpectedAnswer) as error:
            if entry is None:
                raise EntitlementsUnavailable(
                    f"no entitlements held for {account_id} and the service is unreachable: {error}"
                ) from error
            log.warning("serving stale entitlements for %s: %s", account_id, error)
            read = entry
        with self._lock:
            # The feed may have brought something newer while we were reading.
            held = self._entries.get(account_id)
            newest = held if held is not None and held.version >= read.version else read
            return self._view(account_id, newest)

    def has_feature(self, account_id: str, name: str) -> bool:
        return self.get(account_id).has_feature(name)

    def limit(self, account_id: str, name: str) -> int | None:
        return self.get(account_id).limit(name)

    @property
    def cursor(self) -> int | None:
        """The feed cursor reached so far (None before the first feed answer)."""
        with self._lock:
            return self._feed.cursor

    @property
    def connected(self) -> bool:
        """Whether the last feed request succeeded."""
        with self._lock:
            return self._feed.connected

    # -- the entitlement API -----------------------------------------------------------------

    def _read_from_api(self, account_id: str, held: _Entry | None) -> _Entry:
        """Read (or revalidate `held`) from the entitlement API and cache it if that is safe."""
        with self._lock:
            if self._clock() < self._api_retry_at:
                raise _UnexpectedAnswer("the service was unreachable moments ago")
            generation = self._feed.generation
            cacheable = self._feed.cursor is not None
            if cacheable:
                self._feed.fetching[account_id] = self._feed.fetching.get(account_id, 0) + 1
        etag = held.etag if held is not None else None
        try:
            response = self._api.get(
                f"/v1/accounts/{account_id}/entitlements",
                headers={"If-None-Match": etag} if etag else {},
            )
            if response.status_code != 200 and not (etag and response.status_code == 304):
                raise _UnexpectedAnswer(
                    f"entitlement API answered {response.status_code}", response.status_code
                )
            entry = _entry_from(response, held, checked_at=self._clock())
        except (httpx.HTTPError, _UnexpectedAnswer) as error:
            with self._lock:
                if not isinstance(error, _UnexpectedAnswer) or error.service_side:
                    self._api_retry_at = self._clock() + self._backoff[0]
                self._stop_fetching(account_id, cacheable)
            raise
        with self._lock:
            self._stop_fetching(account_id, cacheable)
            if cacheable and generation == self._feed.generation:
                self._keep_newest(account_id, entry)
        return entry

    def _stop_fetching(self, account_id: str, counted: bool) -> None:
        if not counted:
            return
        remaining = self._feed.fetching.get(account_id, 0) - 1
        if remaining > 0:
            self._feed.fetching[account_id] = remaining
        else:
            self._feed.fetching.pop(account_id, None)

    def _keep_newest(self, account_id: str, entry: _Entry) -> None:
        held = self._entries.get(account_id)
        if held is None or entry.version > held.version:
            self._entries[account_id] = entry
        elif entry.version == held.version:
            held.checked_at = max(held.checked_at, entry.checked_at)
            held.etag = held.etag or entry.etag

    # -- the change feed ---------------------------------------------------------------------

    def _follow_feed(self) -> None:
        failures = 0
        with httpx.Client(
            base_url=self._base_url,
            headers=self._headers,
            # The server holds a long poll up to `wait`: the read timeout must outlast it.
            timeout=httpx.Timeout(self._timeout, read=self._wait_seconds + self._timeout),
            transport=self._make_transport() if self._make_transport else None,
        ) as http:
            while not self._stopping.is_set():
                try:
                    self._apply(self._poll(http))
                    failures = 0
                except _FeedRejectedCursor as error:
                    log.error("entitlement feed: %s; dropping the cache and starting over", error)
                    self._start_over()
                except (httpx.HTTPError, _UnexpectedAnswer, ValueError, KeyError) as error:
                    if self._stopping.is_set():
                        # `close()` was called during the poll; the service may be going too.
                        return
                    failures += 1
                    with self._lock:
                        self._feed.connected = False
                    delay = self._backoff_delay(failures)
                    log.warning("entitlement feed unreachable (%s); retry in %.1fs", error, delay)
                    self._stopping.wait(delay)

    def _poll(self, http: httpx.Client) -> dict[str, Any]:
        with self._lock:
            cursor = self._feed.cursor
        params: dict[str, Any] = {"limit": self._page_size}
        if cursor is None:
            # No `after`: the service answers at once with the newest cursor; we follow from there.
            params["wait"] = 0
        else:
            params.update(after=cursor, wait=self._wait_seconds)
        response = http.get("/v1/entitlements/changes", params=params)
        if response.status_code == 400 and cursor is not None:
            raise _FeedRejectedCursor(response.json().get("detail", response.text))
        if response.status_code != 200:
            raise _UnexpectedAnswer(f"change feed answered {response.status_code}")
        page: dict[str, Any] = response.json()
        return page

    def _apply(self, page: dict[str, Any]) -> None:
        now = self._clock()
        with self._lock:
            for change in page["changes"]:
                account_id = change["account_id"]
                if account_id not in self._entries and account_id not in self._feed.fetching:
                    continue
                self._keep_newest(
                    account_id,
                    _Entry(int(change["version"]), change["entitlements"], change["etag"], now),
                )
            self._feed.cursor = int(page["next_cursor"])
            self._feed.connected = True
            # A full page means more is waiting: the cache is only current once caught up.
            if len(page["changes"]) < self._page_size:
                self._feed.synced_at = now

    def _start_over(self) -> None:
        with self._lock:
            self._entries.clear()
            self._feed.cursor = None
            self._feed.synced_at = None
            self._feed.generation += 1

    def _backoff_delay(self, failures: int) -> float:
        first, most = self._backoff
        ceiling = min(most, first * 2 ** (failures - 1))
        # Jitter: app processes that lost the service together do not return in step.
        return random.uniform(ceiling / 2, ceiling)

    # -- helpers (call with the lock held) ---------------------------------------------------

    def _age(self, entry: _Entry) -> float:
        confirmed = entry.checked_at
        if self._feed.synced_at is not None:
            confirmed = max(confirmed, self._feed.synced_at)
        return max(0.0, self._clock() - confirmed)

    def _is_stale(self, entry: _Entry) -> bool:
        return self._age(entry) > self._stale_after

    def _view(self, account_id: str, entry: _Entry) -> Entitlements:
        age = self._age(entry)
        return Entitlements(
            account_id=account_id,
            version=entry.version,
            # Read-only: the cached answer is shared by every caller.
            answer=MappingProxyType(entry.answer),
            age_seconds=age,
            stale=age > self._stale_after,
        )


def _entry_from(response: httpx.Response, held: _Entry | None, checked_at: float) -> _Entry:
    if response.status_code == 304 and held is not None:
        return _Entry(held.version, held.answer, held.etag, checked_at)
    try:
        answer = response.json()
        return _Entry(int(answer["version"]), answer, response.headers.get("ETag"), checked_at)
    except (ValueError, KeyError, TypeError) as error:
        raise _UnexpectedAnswer(f"unreadable entitlement answer: {error}", 502) from error
