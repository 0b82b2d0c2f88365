"""Test clocks (``/v1/test_helpers/test_clocks``).

Advancing runs, in time order, everything that falls due on the clock's objects up to the
new time (renewals, finalizations, retries, trial ends, expiries); each step happens at its
own moment, so objects and events carry that moment's time. The work is done inside the
advance request, which still answers ``status: "advancing"`` as Stripe does; the clock reads
``ready`` as soon as it is retrieved again.
"""

from __future__ import annotations

from stripe_sim.billing import ENDED_STATUSES
from stripe_sim.customers import delete_customer_and_subscriptions
from stripe_sim.errors import invalid
from stripe_sim.events import emit
from stripe_sim.listing import LIST_PARAMS, paginate
from stripe_sim.params import as_int, as_str
from stripe_sim.periods import add_intervals, format_date
from stripe_sim.render import public, render_expanded
from stripe_sim.router import Ctx, Router
from stripe_sim.settings import DAY
from stripe_sim.store import Obj, RequestInfo

router = Router()


@router.route("POST", "/v1/test_helpers/test_clocks", implements=("frozen_time", "name", "expand"))
def create_clock(ctx: Ctx) -> Obj:
    store = ctx.store
    frozen = as_int(ctx.params, "frozen_time", required=True)
    assert frozen is not None
    now = store.clock_now(None)
    clock = store.insert(
        {
            "id": store.new_id("clock_"),
            "object": "test_helpers.test_clock",
            "created": now,
            "deletes_after": now + 7 * DAY,
            "frozen_time": frozen,
            "livemode": False,
            "name": as_str(ctx.params, "name"),
            "status": "ready",
            "status_details": {},
        }
    )
    emit(store, "test_helpers.test_clock.created", clock, at=now)
    return render_expanded(store, clock, ctx.expand)


@router.route("GET", "/v1/test_helpers/test_clocks/{clock_id}", implements=("expand",))
def retrieve_clock(ctx: Ctx, clock_id: str) -> Obj:
    return render_expanded(
        ctx.store, ctx.store.require("test_helpers.test_clock", clock_id), ctx.expand
    )


@router.route("GET", "/v1/test_helpers/test_clocks", implements=LIST_PARAMS)
def list_clocks(ctx: Ctx) -> Obj:
    return paginate(
        ctx.store,
        ctx.store.of_kind("test_helpers.test_clock"),
        ctx.params,
        "/v1/test_helpers/test_clocks",
        public,
    )


@router.route("DELETE", "/v1/test_helpers/test_clocks/{clock_id}", implements=())
def delete_clock(ctx: Ctx, clock_id: str) -> Obj:
    store = ctx.store
    clock = store.require("test_helpers.test_clock", clock_id)
    for cust in store.of_kind("customer"):
        if cust["test_clock"] == clock_id:
            delete_customer_and_subscriptions(ctx, cust)
    clock["_deleted"] = True
    emit(store, "test_helpers.test_clock.deleted", clock, at=store.clock_now(None))
    return {"id": clock_id, "object": "test_helpers.test_clock", "deleted": True}


def advance_limit(ctx: Ctx, clock: Obj) -> int:
    """Stripe: at most two intervals of the shortest subscription on the clock ahead of the
    current frozen time; two years when it has no subscriptions."""
    frozen = int(clock["frozen_time"])
    limits = []
    for sub in ctx.store.where("subscription", "test_clock", clock["id"]):
        if sub["status"] not in ENDED_STATUSES:
            interval, count = ctx.engine.interval_of(sub)
            limits.append(add_intervals(frozen, interval, 2 * count))
    return min(limits) if limits else add_intervals(frozen, "year", 2)


@router.route(
    "POST", "/v1/test_helpers/test_clocks/{clock_id}/advance", implements=("frozen_time",)
)
def advance_clock(ctx: Ctx, clock_id: str) -> Obj:
    store = ctx.store
    clock = store.require("test_helpers.test_clock", clock_id)
    target = as_int(ctx.params, "frozen_time", required=True)
    assert target is not None
    if clock["status"] != "ready":
        raise invalid(
            "The test clock is already advancing. Wait until it is ready before "
            "advancing it again.",
            param="frozen_time",
        )
    if target <= clock["frozen_time"]:
        raise invalid(
            "The frozen_time must be after the test clock's current frozen_time "
            f"({clock['frozen_time']}).",
            param="frozen_time",
        )
    limit = advance_limit(ctx, clock)
    if target > limit:
        raise invalid(
            "Cannot advance the test clock more than two intervals of the shortest "
            "subscription on it (or two years when it has none). The furthest you can "
            f"advance to is {limit} ({format_date(limit)}).",
            param="frozen_time",
        )
    start = clock["frozen_time"]
    clock["status"] = "advancing"
    clock["status_details"] = {"advancing": {"target_frozen_time": target}}
    response = public(clock)
    emit(store, "test_helpers.test_clock.advancing", clock, at=start)
    # What happens during the advance is automatic, not caused by this request.
    request, store.request = store.request, RequestInfo()
    ctx.engine.run_due(clock_id, target)
    store.request = request
    clock["frozen_time"] = target
    clock["status"] = "ready"
    clock["status_details"] = {}
    emit(store, "test_helpers.test_clock.ready", clock, at=target)
    return response
