"""Property-based fuzzing of the entitlement API and the admin API: never a 500, and without
the right bearer token nothing is read and nothing changes."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.operator_actions import ACTIONS
from tests.api.conftest import ADMIN_TOKEN, APP_TOKEN
from tests.fuzz.conftest import FuzzApp

FUZZ = settings(
    max_examples=50,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

account_ids = st.one_of(
    st.from_regex(r"acct_[A-Za-z0-9]{1,20}", fullmatch=True),
    st.text(min_size=1, max_size=200),
    st.sampled_from(["acct_\u00e9t\u00e9", "acct_\U0001f4b8", "a" * 129, "..", "%00", "acct x"]),
)
# Everything but the right token: none, wrong ones, the other API's, odd schemes.
wrong_authorizations = st.one_of(
    st.none(),
    st.text(max_size=80).map(lambda t: f"Bearer {t}"),
    st.sampled_from([f"Bearer {APP_TOKEN} ", f"bearer{ADMIN_TOKEN}", f"Basic {ADMIN_TOKEN}", ""]),
)
json_bodies = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=10,
)
operator_bodies = st.one_of(
    json_bodies,
    st.fixed_dictionaries(
        {"actor": st.text(max_size=300), "reason": st.text(max_size=300)},
        optional={
            "plan": st.text(max_size=30),
            "until": st.text(max_size=40) | st.integers(),
            "days": st.integers() | st.text(max_size=5),
        },
    ),
)


def headers_for(authorization: str | None) -> dict[str, bytes]:
    return {} if authorization is None else {"Authorization": authorization.encode()}


def path_part(text: str) -> str:
    return quote(text, safe="")


@FUZZ
@given(account_id=account_ids, authorization=wrong_authorizations)
def test_entitlements_need_the_app_token(
    fuzz_app: FuzzApp, account_id: str, authorization: str | None
) -> None:
    response = fuzz_app.client.get(
        f"/v1/accounts/{path_part(account_id)}/entitlements", headers=headers_for(authorization)
    )
    assert response.status_code in (401, 404, 422), response.text


@FUZZ
@given(account_id=account_ids, token=st.sampled_from([APP_TOKEN, ADMIN_TOKEN]))
def test_entitlements_of_any_account_id_never_crash(
    fuzz_app: FuzzApp, account_id: str, token: str
) -> None:
    response = fuzz_app.client.get(
        f"/v1/accounts/{path_part(account_id)}/entitlements",
        headers={"Authorization": f"Bearer {token}"},
    )
    # 404: no such route (an id that breaks the path); nothing is read then either.
    expected = (200, 404, 422) if token == APP_TOKEN else (401, 404)
    assert response.status_code in expected, response.text


@FUZZ
@given(
    account_id=account_ids,
    action=st.sampled_from(sorted(ACTIONS)) | st.text(max_size=30),
    body=operator_bodies,
    authorization=wrong_authorizations | st.just(f"Bearer {APP_TOKEN}"),
)
def test_operator_actions_need_the_admin_token_and_change_nothing_without_it(
    fuzz_app: FuzzApp, account_id: str, action: str, body: Any, authorization: str | None
) -> None:
    before = fuzz_app.state()
    response = fuzz_app.client.post(
        f"/admin/accounts/{path_part(account_id)}/actions/{path_part(action)}",
        json=body,
        headers=headers_for(authorization),
    )
    assert response.status_code in (401, 404, 405, 422), response.text
    assert fuzz_app.state() == before


@FUZZ
@given(
    account_id=account_ids,
    action=st.sampled_from(sorted(ACTIONS)) | st.text(max_size=30),
    body=operator_bodies,
)
def test_operator_actions_with_any_input_never_crash(
    fuzz_app: FuzzApp, account_id: str, action: str, body: Any
) -> None:
    response = fuzz_app.client.post(
        f"/admin/accounts/{path_part(account_id)}/actions/{path_part(action)}",
        json=body,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    # 503: every valid request reaches the fake Temporal, which is unavailable.
    assert response.status_code in (400, 404, 405, 409, 422, 503), response.text


@FUZZ
@given(body=json_bodies, authorization=wrong_authorizations)
def test_linking_unroutable_events_needs_the_admin_token(
    fuzz_app: FuzzApp, body: Any, authorization: str | None
) -> None:
    before = fuzz_app.state()
    response = fuzz_app.client.post(
        "/admin/unroutable-events/link", json=body, headers=headers_for(authorization)
    )
    assert response.status_code == 401, response.text
    assert fuzz_app.state() == before
