"""Property-based fuzzing of the webhook gateway: whatever arrives, never a 500, and nothing
changes (database rows, signals to Temporal) unless the body carries a valid, fresh signature.
"""

from __future__ import annotations

import json
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.stripe_events import HANDLED_EVENT_TYPES
from tests.fuzz.conftest import MAX_BODY_BYTES, FuzzApp
from tests.signing import stripe_signature

FUZZ = settings(
    max_examples=50,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TOLERANCE = 300

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
# Ids as they should be, and as they should not: unicode, empty, huge, path-like.
ids = st.one_of(
    st.from_regex(r"[a-z]{2,4}_[A-Za-z0-9]{6,24}", fullmatch=True),
    st.text(min_size=0, max_size=300),
    st.sampled_from(["", " ", "../../admin", "acct_\u00e9t\u00e9", "acct_\U0001f4b8", "a" * 129]),
)


@st.composite
def event_like(draw: st.DrawFn) -> dict[str, Any]:
    """Something shaped like a Stripe event, with any part of it wrong or odd."""
    obj: dict[str, Any] = {
        "id": draw(ids),
        "object": draw(
            st.sampled_from(["subscription", "invoice", "customer", "checkout.session"])
        ),
        "customer": draw(st.none() | ids | json_values),
        "metadata": draw(st.none() | st.fixed_dictionaries({"account_id": ids}) | json_values),
    }
    event: dict[str, Any] = {
        "id": draw(ids),
        "object": "event",
        "type": draw(st.sampled_from(sorted(HANDLED_EVENT_TYPES)) | st.text(max_size=40)),
        "created": draw(st.integers(min_value=-(2**63), max_value=2**63) | json_values),
        "data": {"object": draw(st.just(obj) | json_values)},
    }
    dropped = draw(st.sets(st.sampled_from(sorted(event))))
    return {k: v for k, v in event.items() if k not in dropped}


bodies = st.one_of(
    st.binary(max_size=2048),
    event_like().map(lambda e: json.dumps(e).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
)
signature_headers = st.one_of(
    st.none(),
    st.text(max_size=200),
    st.builds(lambda t, v: f"t={t},v1={v}", st.integers(), st.text(alphabet="0123456789abcdef")),
)
content_types = st.sampled_from(
    ["application/json", "text/plain", "application/x-www-form-urlencoded", "", "image/png"]
)


def post(app: FuzzApp, body: bytes, signature: str | None, content_type: str) -> int:
    headers = {"Content-Type": content_type.encode()}
    if signature is not None:
        # Bytes: a header may carry anything, not only ASCII.
        headers["Stripe-Signature"] = signature.encode()
    return app.client.post("/webhooks/stripe", content=body, headers=headers).status_code


@FUZZ
@given(body=bodies, signature=signature_headers, content_type=content_types)
def test_unsigned_or_badly_signed_bodies_are_refused_and_change_nothing(
    fuzz_app: FuzzApp, body: bytes, signature: str | None, content_type: str
) -> None:
    before = fuzz_app.state()
    status = post(fuzz_app, body, signature, content_type)
    assert status in (400, 413)
    assert fuzz_app.state() == before


@FUZZ
@given(event=event_like(), content_type=content_types)
def test_validly_signed_events_of_any_shape_never_crash(
    fuzz_app: FuzzApp, event: dict[str, Any], content_type: str
) -> None:
    body = json.dumps(event).encode()
    signature = stripe_signature(body, fuzz_app.settings.stripe_webhook_secret)
    assert post(fuzz_app, body, signature, content_type) in (200, 400)


@FUZZ
@given(event=event_like(), age=st.integers(min_value=TOLERANCE + 1, max_value=10 * 365 * 86_400))
def test_signatures_replayed_outside_the_tolerance_are_refused(
    fuzz_app: FuzzApp, event: dict[str, Any], age: int
) -> None:
    """Only old signatures: like Stripe's own verifier, the gateway accepts a timestamp from
    the future, which only a holder of the secret can sign."""
    body = json.dumps(event).encode()
    stale = int(time.time()) - age
    signature = stripe_signature(body, fuzz_app.settings.stripe_webhook_secret, stale)
    before = fuzz_app.state()
    assert post(fuzz_app, body, signature, "application/json") == 400
    assert fuzz_app.state() == before


@FUZZ
@given(extra=st.integers(min_value=1, max_value=4 * MAX_BODY_BYTES), signed=st.booleans())
def test_oversized_bodies_are_refused_before_anything_else(
    fuzz_app: FuzzApp, extra: int, signed: bool
) -> None:
    body = b"{" + b" " * (MAX_BODY_BYTES + extra) + b"}"
    signature = stripe_signature(body, fuzz_app.settings.stripe_webhook_secret) if signed else None
    before = fuzz_app.state()
    assert post(fuzz_app, body, signature, "application/json") == 413
    assert fuzz_app.state() == before


@FUZZ
@given(event=event_like(), secret=st.text(min_size=1, max_size=60))
def test_events_signed_with_another_secret_change_nothing(
    fuzz_app: FuzzApp, event: dict[str, Any], secret: str
) -> None:
    if secret == fuzz_app.settings.stripe_webhook_secret:
        return
    body = json.dumps(event).encode()
    before = fuzz_app.state()
    assert post(fuzz_app, body, stripe_signature(body, secret), "application/json") == 400
    assert fuzz_app.state() == before
