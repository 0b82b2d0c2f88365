"""How long an entitlement change takes from its database commit to an app's local cache.

The real path: `db.repository.write_entitlements` commits a change; the API (uvicorn on a
loopback port, in a thread) answers the `EntitlementsClient`'s waiting long poll; the client's
feed thread puts it in the cache. Latency is measured from just after the commit to the moment
`client.get()` returns the new version, so it includes the server's poll step
(`api.routes.feed.POLL_INTERVAL_SECONDS`), HTTP and the client's apply.

    .venv/bin/python bench/feed_latency.py [--changes 200] [--database-url URL] [--out FILE]

Prints p50/p90/p99/max in milliseconds and writes them, with the settings, as JSON. Without
`--database-url` it uses a fresh SQLite file; pass a PostgreSQL URL to measure there (it
creates the tables with the migrations, so use a scratch database).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import uuid4

import uvicorn

# Runnable as `python bench/feed_latency.py` from the repo root: the packages live beside it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.main import create_app
from api.routes.feed import POLL_INTERVAL_SECONDS
from core.config import Settings
from db import repository
from db.engine import make_engine, make_session_factory, migrate
from domain.catalog import default_catalog
from domain.entitlements import free_entitlements
from entitlements_client import EntitlementsClient

TOKEN = "bench-app-token"
# No sample may take longer than this: the benchmark stops rather than hang.
SAMPLE_TIMEOUT_SECONDS = 10.0


class NoTemporal:
    """The feed never touches Temporal."""


def serve_api(settings: Settings) -> tuple[str, uvicorn.Server, threading.Thread]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    app = create_app(settings, temporal_client=NoTemporal())  # type: ignore[arg-type]
    # Quiet: stopping cancels the client's last long poll, which uvicorn reports as an error.
    config = uvicorn.Config(app, log_level="critical", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=asyncio.run, args=(server.serve(sockets=[listener]),))
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the API did not start")
        time.sleep(0.01)
    return url, server, thread


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measure(database_url: str, changes: int, accounts: int) -> dict[str, Any]:
    migrate(database_url)
    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    settings = Settings(_env_file=None, database_url=database_url, app_api_token=TOKEN)
    url, server, thread = serve_api(settings)
    client = EntitlementsClient(url, TOKEN, wait_seconds=20).start()
    paid = replace(free_entitlements(default_catalog()), plan="pro", billing_state="active")
    tracked = [f"acct_bench_{uuid4().hex[:10]}" for _ in range(accounts)]
    latencies_ms: list[float] = []
    try:
        deadline = time.monotonic() + SAMPLE_TIMEOUT_SECONDS
        while client.cursor is None:
            if time.monotonic() > deadline:
                raise RuntimeError("the client did not connect to the feed")
            time.sleep(0.01)
        for account_id in tracked:
            client.get(account_id)
        for n in range(changes):
            account_id = tracked[n % accounts]
            version = n // accounts + 1
            with sessions.begin() as session:
                repository.write_entitlements(session, account_id, version, paid, {}, "bench", [])
            written = time.perf_counter()
            while client.get(account_id).version < version:
                if time.perf_counter() - written > SAMPLE_TIMEOUT_SECONDS:
                    raise RuntimeError(f"change {n} did not reach the cache")
                time.sleep(0.0005)
            latencies_ms.append((time.perf_counter() - written) * 1000)
    finally:
        client.close()
        server.should_exit = True
        thread.join(timeout=15)
        engine.dispose()
    return {
        "benchmark": "feed_latency",
        "database": engine.dialect.name,
        "changes": changes,
        "accounts": accounts,
        "server_poll_interval_ms": POLL_INTERVAL_SECONDS * 1000,
        "latency_ms": {
            "p50": round(percentile(latencies_ms, 0.50), 2),
            "p90": round(percentile(latencies_ms, 0.90), 2),
            "p99": round(percentile(latencies_ms, 0.99), 2),
            "max": round(max(latencies_ms), 2),
            "mean": round(statistics.fmean(latencies_ms), 2),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=200, help="changes to time (default 200)")
    parser.add_argument("--accounts", type=int, default=10, help="accounts they go to")
    parser.add_argument("--database-url", help="scratch database (default: a new SQLite file)")
    parser.add_argument("--out", type=Path, default=Path(".data/bench/feed_latency.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        database_url = args.database_url or f"sqlite:///{scratch}/feed-bench.db"
        result = measure(database_url, args.changes, args.accounts)
    latency = result["latency_ms"]
    print(
        f"feed latency, write → client cache, {result['changes']} changes on "
        f"{result['database']}: p50 {latency['p50']} ms, p99 {latency['p99']} ms "
        f"(max {latency['max']} ms; server poll step {result['server_poll_interval_ms']} ms)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
