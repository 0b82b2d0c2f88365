"""The HTTP application: Stripe's ``/v1`` API plus the simulator's hosted pages.

Request handling mirrors Stripe: bearer (or basic) auth with any ``sk_test_`` key,
form-decoded parameters, ``Idempotency-Key`` replay, ``Stripe-Version`` echo, JSON error
bodies with Stripe's status codes. Handlers run under the store lock, and after every write
the affected clocks' due work runs (for example a ``trial_will_end`` that is already due).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from stripe_sim import (
    catalog,
    checkout,
    clocks,
    coupons,
    customers,
    events_api,
    expandable,
    invoices,
    portal,
    schedules,
    tax,
)
from stripe_sim import subscriptions as subscriptions_api
from stripe_sim.billing import Engine
from stripe_sim.errors import StripeError, invalid
from stripe_sim.formdata import decode
from stripe_sim.pages import page_routes
from stripe_sim.params import as_list
from stripe_sim.request_schema import (
    conform,
    load_stripe_routes,
    load_table,
    more_literal_routes,
    route_key,
    undeclarable,
    unserved,
)
from stripe_sim.router import Ctx, Router
from stripe_sim.router import Route as ApiRoute
from stripe_sim.store import IdempotentResult, RequestInfo, Store
from stripe_sim.webhooks import WebhookDispatcher

log = logging.getLogger("stripe_sim")

# "2026-10-28.endive", optionally followed by beta flags ("; feature_beta=v1").
_VERSION = re.compile(r"^(\d{4}-\d{2}-\d{2})(\.[a-z]+)?(; *[a-z0-9_]+=v\d+)*$")
# Stripe keeps idempotency keys for at least 24 hours; a key older than that is new again.
IDEMPOTENCY_KEY_SECONDS = 24 * 3600
_ROUTERS: list[Router] = [
    catalog.router,
    coupons.router,
    customers.router,
    tax.router,
    subscriptions_api.router,
    schedules.router,
    invoices.router,
    clocks.router,
    events_api.router,
    checkout.router,
    portal.router,
]


class Simulator:
    """The state plus the HTTP app; shared by the in-process server and ``__main__``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.engine = Engine(store)
        schedules.attach(self.engine)
        self.webhooks = WebhookDispatcher(store, store.settings)
        self._schemas = route_schemas()
        self._stripe_routes = load_stripe_routes()
        served = {route_key(method, pattern) for method, pattern in served_routes()}
        self._unserved_more_literal = {
            route: more_literal_routes(self._stripe_routes, served, route.method, route.pattern)
            for route in self._schemas
        }
        self.app = Starlette(
            routes=[
                *page_routes(self),
                Route("/v1/{path:path}", self.api, methods=["GET", "POST", "DELETE"]),
                Route("/_sim/health", self.health, methods=["GET"]),
                Route("/_sim/idle", self.idle, methods=["GET"]),
                Route("/_sim/settings", self.get_settings, methods=["GET"]),
                Route("/_sim/settings", self.update_settings, methods=["POST"]),
                Route(
                    "/_sim/webhook_endpoints/{we_id}/secret",
                    self.set_webhook_secret,
                    methods=["POST"],
                ),
            ]
        )

    # Simulator controls (not Stripe API): for demos and out-of-process tests. -------------
    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def idle(self, request: Request) -> Response:
        """Answer once every webhook delivery is done (``?timeout=`` seconds, default 10)."""
        timeout = float(request.query_params.get("timeout", "10"))
        try:
            await run_in_threadpool(self.webhooks.wait_idle, timeout)
        except TimeoutError as exc:
            return JSONResponse({"idle": False, "detail": str(exc)}, 504)
        return JSONResponse({"idle": True})

    async def get_settings(self, request: Request) -> Response:
        return JSONResponse(_settings_json(self.store.settings))

    async def update_settings(self, request: Request) -> Response:
        """Change settings at run time, e.g. ``{"faults": {"duplicate_rate": 0.3}}``."""
        changes = await request.json()
        settings = self.store.settings
        with self.store.lock:
            for key, value in changes.items():
                target = settings.faults if key == "faults" else settings
                values = value if key == "faults" else {key: value}
                for name, new in values.items():
                    if not hasattr(target, name):
                        return JSONResponse({"error": f"unknown setting: {name}"}, 400)
                    current = getattr(target, name)
                    setattr(target, name, tuple(new) if isinstance(current, tuple) else new)
            self.webhooks.reseed()
        return JSONResponse(_settings_json(settings))

    async def set_webhook_secret(self, request: Request) -> Response:
        """Sign an endpoint's deliveries with ``{"secret": "whsec_..."}`` from now on: a local
        stack keeps its configured secret, where Stripe would draw a new one per endpoint."""
        secret = (await request.json()).get("secret")
        if not isinstance(secret, str) or not secret:
            return JSONResponse({"error": "secret: a non-empty string is required"}, 400)
        with self.store.lock:
            endpoint = self.store.get(request.path_params["we_id"], "webhook_endpoint")
            if endpoint is None or endpoint.get("_deleted"):
                return JSONResponse({"error": "no such webhook endpoint"}, 404)
            endpoint["secret"] = secret
        return JSONResponse({"id": endpoint["id"], "secret": secret})

    def run_due(self, clocks_to_run: set[str | None]) -> None:
        """Perform what has fallen due "now" for objects on these clocks (None: real time)."""
        for clock_id in clocks_to_run:
            if clock_id is None:
                self.engine.run_due(None, self.store.clock_now(None))
                continue
            clock = self.store.get(clock_id, "test_helpers.test_clock")
            if clock is not None and clock["status"] == "ready" and not clock.get("_deleted"):
                self.engine.run_due(clock_id, clock["frozen_time"])

    def run_due_after_write(self, touched_clocks: set[str | None]) -> None:
        """Due work on the test clocks a write touched. Objects on real time are the ticker's:
        their work falls due by itself and runs within a tick, as Stripe's runs shortly
        after, never inside a request. Scanning them all after every write took half the
        simulator's CPU at 1,000 subscriptions."""
        self.run_due(touched_clocks - {None})

    async def api(self, request: Request) -> Response:
        request_id = self.store.new_id("req_", 14)
        pinned = self.store.settings.api_version
        headers = {"Request-Id": request_id, "Stripe-Version": pinned}
        saving: IdempotencyRecord | None = None
        try:
            api_key = _api_key(request)
            check_api_version(request.headers.get("stripe-version"), pinned)
            body = await request.body()
            raw = request.url.query if request.method != "POST" else body.decode()
            params = decode(raw, listify=False)
            if request.method == "POST" and request.url.query:
                params = {**decode(request.url.query, listify=False), **params}
            key = request.headers.get("idempotency-key") if request.method == "POST" else None
            record = None
            if key:
                headers["Idempotency-Key"] = key
                record = IdempotencyRecord(f"{api_key}:{key}", key, request.url.path, params)
                replay = self._replay(record)
                if replay is not None:
                    replayed = {
                        "Idempotent-Replayed": "true",
                        "Original-Request": replay.request_id,
                    }
                    return Response(
                        replay.body,
                        replay.status,
                        headers={**headers, **replayed},
                        media_type="application/json",
                    )
                headers["Original-Request"] = request_id
            matched = _match(request.method, request.url.path)
            if matched is None or any(
                other.regex.match(request.url.path)
                for other in self._unserved_more_literal[matched[0]]
            ):
                raise unserved(self._stripe_routes, request.method, request.url.path)
            route, path_params = matched
            params = self._checked(route, request, params)
            # Stripe saves the result once the endpoint started executing (errors included,
            # 500s too); a request refused before that, by parameter validation, is not.
            saving = record
            status, payload = self._execute(route, path_params, request, params, request_id, key)
        except StripeError as exc:
            status, payload = exc.status, exc.body(request_id)
        except Exception:  # a simulator bug must still answer in Stripe's shape
            log.exception("unhandled error in %s %s", request.method, request.url.path)
            status = 500
            payload = StripeError(
                500, "api_error", "An unexpected error occurred in the Stripe simulator."
            ).body(request_id)
        # Stripe indents its answers; clients parse them, and without `indent` the json
        # module encodes in C: a fifth of the simulator's CPU under the benchmark's load.
        content = json.dumps(payload).encode()
        if saving is not None:
            with self.store.lock:
                self.store.idempotency[saving.scope] = IdempotentResult(
                    saving.path, saving.fingerprint, status, content, request_id, time.time()
                )
        return Response(content, status, headers=headers, media_type="application/json")

    def _replay(self, record: IdempotencyRecord) -> IdempotentResult | None:
        """The saved result for this key, if the same request was made with it before (and
        less than 24 hours ago); Stripe's idempotency_error if the key was used otherwise."""
        with self.store.lock:
            saved = self.store.idempotency.get(record.scope)
            if saved is not None and time.time() - saved.saved_at > IDEMPOTENCY_KEY_SECONDS:
                del self.store.idempotency[record.scope]  # Stripe prunes keys after 24 hours
                saved = None
        if saved is None:
            return None
        if saved.path != record.path:
            raise StripeError(
                400,
                "idempotency_error",
                "Keys for idempotent requests can only be used for the same endpoint they were "
                f"first used for ('{record.path}' vs '{saved.path}'). Try using a key other "
                f"than '{record.key}' if you meant to execute a different request.",
            )
        if saved.fingerprint != record.fingerprint:
            raise StripeError(
                400,
                "idempotency_error",
                "Keys for idempotent requests can only be used with the same parameters they "
                f"were first used with. Try using a key other than '{record.key}' if you meant "
                "to execute a different request.",
            )
        return saved

    def _checked(self, route: ApiRoute, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        """The params after Stripe's validation and the simulator's refusal of what it does
        not implement (request_schema), and the up-front ``expand[]`` check of writes."""
        where = f"{request.method} {request.url.path}"
        params = conform(self._schemas[route], route.implements, params, where)
        kind = expandable.kind_for_write(request.url.path) if request.method != "GET" else None
        if kind is not None:
            expandable.check(kind, [str(p) for p in as_list(params, "expand")])
        return params

    def _execute(
        self,
        route: ApiRoute,
        path_params: dict[str, str],
        request: Request,
        params: dict[str, Any],
        request_id: str,
        key: str | None,
    ) -> tuple[int, dict[str, Any]]:
        with self.store.lock:
            ctx = Ctx(self.store, self.engine, request.method, request.url.path, params)
            self.store.request = RequestInfo(request_id, key)
            try:
                result = route.handler(ctx, **path_params)
                if request.method != "GET":
                    self.run_due_after_write(ctx.touched_clocks)
            finally:
                self.store.request = RequestInfo()
        return 200, result


def _settings_json(settings: Any) -> dict[str, Any]:
    return dataclasses.asdict(settings)


@dataclass
class IdempotencyRecord:
    """An ``Idempotency-Key`` request: where its result is saved, and what identifies it."""

    scope: str
    key: str
    path: str
    params: dict[str, Any]
    fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        canonical = json.dumps(self.params, sort_keys=True)
        self.fingerprint = hashlib.sha256(canonical.encode()).hexdigest()


def check_api_version(requested: str | None, pinned: str) -> None:
    """Serve the pinned version (also when the request names none: the account's default
    is the pinned version); refuse any other real version, which the simulator cannot
    render, and answer nonsense as Stripe does."""
    if requested is None or requested == pinned:
        return
    found = _VERSION.match(requested)
    if found:
        try:
            datetime.date.fromisoformat(found.group(1))
        except ValueError:
            found = None
    if not found:
        raise invalid(f"Invalid Stripe API version: {requested}")
    raise StripeError(
        400,
        "invalid_request_error",
        f"The Stripe simulator renders API version {pinned} only (stripe-python's pinned "
        f"version) and cannot answer in {requested}. Send Stripe-Version: {pinned}, or no "
        "Stripe-Version header.",
        code="api_version_not_implemented_by_simulator",
    )


def route_schemas() -> dict[ApiRoute, Any]:
    """Each served route's schema from request_schema.json, after checking that the table
    covers every route and that no route claims a parameter Stripe does not have."""
    table = load_table()
    schemas: dict[ApiRoute, Any] = {}
    problems = []
    for router in _ROUTERS:
        for route in router.routes:
            key = route_key(route.method, route.pattern)
            if key not in table:
                problems.append(f"{key}: not in request_schema.json")
                continue
            schemas[route] = table[key]["params"]
            problems.extend(
                f"{key}: implements {name}, which Stripe does not have there"
                for name in undeclarable(schemas[route], route.implements)
            )
    if problems:
        raise RuntimeError(
            "; ".join(problems) + " (python -m stripe_sim.request_schema_gen rebuilds the table)"
        )
    return schemas


def served_routes() -> list[tuple[str, str]]:
    """Every (method, path pattern) of the Stripe API the simulator serves."""
    return [(route.method, route.pattern) for router in _ROUTERS for route in router.routes]


def _match(method: str, path: str) -> tuple[ApiRoute, dict[str, str]] | None:
    for router in _ROUTERS:
        matched = router.match(method, path)
        if matched is not None:
            return matched
    return None


def _api_key(request: Request) -> str:
    header = request.headers.get("authorization", "")
    key = ""
    if header.lower().startswith("bearer "):
        key = header[7:].strip()
    elif header.lower().startswith("basic "):
        try:
            key = base64.b64decode(header[6:]).decode().split(":", 1)[0]
        except (ValueError, UnicodeDecodeError):
            key = ""
    if not key:
        raise StripeError(
            401,
            "invalid_request_error",
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
            "YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, "
            "or we can help at https://support.stripe.com/.",
        )
    if not key.startswith(("sk_test_", "rk_test_")):
        shown = key[:8] + "*" * 4 + key[-4:] if len(key) > 12 else key
        raise StripeError(
            401,
            "invalid_request_error",
            f"Invalid API Key provided: {shown}",
            code="api_key_invalid" if key.startswith("sk_live_") else None,
        )
    return key
