"""The billing routes the Dataface app calls for a customer: checkout and the portal against
the Stripe simulator; plan changes, cancel and resume with the account workflows faked
(`FakeAccountWorkflows`), so each answer — the entitlements, a refusal's 409, an outage's 503 —
is checked here, route by route."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import httpx
import pytest
import stripe
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from api.account_workflows import PlanChanged
from api.edge import MAY_STILL_APPLY, NOT_APPLIED, TemporalUnavailable
from core.config import Settings
from db import repository
from domain.catalog import default_catalog
from domain.lifecycle import BillingState, Lifecycle
from domain.plan_changes import ChangeKind, PlanChange, purchase_for
from tests.api.conftest import APP_TOKEN, ClientFactory, RecordingTemporal, closed_port
from tests.api.routes.conftest import FakeAccountWorkflows, api_with, seed_account
from tests.workflows.harness import subscription

pytestmark = pytest.mark.db

AUTH = {"Authorization": f"Bearer {APP_TOKEN}"}


@pytest.fixture
async def client(
    make_client: ClientFactory, simulated_settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(
        temporal_client=RecordingTemporal(), settings=simulated_settings
    ) as client:
        yield client


@pytest.fixture
async def api(
    simulated_settings: Settings, workflows: FakeAccountWorkflows
) -> AsyncIterator[httpx.AsyncClient]:
    async with api_with(simulated_settings, workflows) as api:
        yield api


def new_account() -> str:
    return f"acct_{uuid4().hex[:12]}"


def checkout_url(account_id: str) -> str:
    return f"/v1/accounts/{account_id}/checkout"


def paying(plan: str = "pro", *, state: BillingState = BillingState.ACTIVE) -> Lifecycle:
    return Lifecycle(state=state, subscription=subscription("cus_seeded", plan=plan))


async def entitlements_of(api: httpx.AsyncClient, account_id: str) -> dict[str, Any]:
    response = await api.get(f"/v1/accounts/{account_id}/entitlements", headers=AUTH)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def assert_retry_later(response: httpx.Response, detail: str) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0
    assert response.json() == {"detail": detail}


# --- checkout: the customer it creates ---------------------------------------------------


def customer_of(
    stripe_client: stripe.StripeClient, sessions: sessionmaker[Session], account_id: str
) -> Any:
    with sessions() as session:
        customer_id = repository.customer_for_account(session, account_id)
    assert customer_id is not None
    return stripe_client.v1.customers.retrieve(customer_id)


async def test_the_customer_is_created_with_the_email_and_name_given(
    client: httpx.AsyncClient,
    stripe_client: stripe.StripeClient,
    session_factory: sessionmaker[Session],
) -> None:
    account = f"acct_{uuid4().hex[:12]}"
    body = {"plan": "pro", "email": "ada@example.com", "name": "Ada Lovelace"}

    response = await client.post(checkout_url(account), json=body, headers=AUTH)

    assert response.status_code == 201, response.text
    customer = customer_of(stripe_client, session_factory, account)
    assert (customer.email, customer.name) == ("ada@example.com", "Ada Lovelace")
    assert customer.metadata["account_id"] == account


async def test_without_an_email_the_one_typed_into_checkout_is_set_on_the_customer(
    client: httpx.AsyncClient,
    stripe_client: stripe.StripeClient,
    session_factory: sessionmaker[Session],
) -> None:
    account = f"acct_{uuid4().hex[:12]}"

    response = await client.post(checkout_url(account), json={"plan": "pro"}, headers=AUTH)

    assert response.status_code == 201, response.text
    assert customer_of(stripe_client, session_factory, account).email is None
    async with httpx.AsyncClient() as browser:
        paid = await browser.post(
            response.json()["url"],
            data={"payment_method": "pm_card_visa", "email": "typed@example.com"},
        )
    assert paid.status_code == 303
    assert customer_of(stripe_client, session_factory, account).email == "typed@example.com"


@pytest.mark.parametrize(
    "contact",
    [
        {"email": "not-an-address"},
        {"email": "two@at@example.com"},
        {"email": "spaced out@example.com"},
        {"email": f"{'a' * 250}@example.com"},
        {"name": ""},
        {"name": "x" * 257},
        {"name": "Ada\r\nBcc: everyone@example.com"},
    ],
)
async def test_a_malformed_contact_is_refused_before_stripe_is_asked(
    client: httpx.AsyncClient,
    session_factory: sessionmaker[Session],
    contact: dict[str, str],
) -> None:
    account = f"acct_{uuid4().hex[:12]}"

    response = await client.post(
        checkout_url(account), json={"plan": "pro", **contact}, headers=AUTH
    )

    assert response.status_code == 422
    [field] = contact
    assert any(error["loc"][-1] == field for error in response.json()["detail"])
    with session_factory() as session:
        assert repository.customer_for_account(session, account) is None


# --- checkout: which page, or why none ---------------------------------------------------


async def test_checkout_of_a_plan_that_cannot_be_bought_is_422_before_stripe_is_asked(
    api: httpx.AsyncClient, session_factory: sessionmaker[Session]
) -> None:
    account = new_account()
    answers = [
        await api.post(checkout_url(account), json={"plan": "platinum"}, headers=AUTH),
        await api.post(checkout_url(account), json={"plan": "enterprise"}, headers=AUTH),
        await api.post(checkout_url(account), json={"plan": "team", "seats": 1}, headers=AUTH),
    ]

    assert [a.status_code for a in answers] == [422, 422, 422]
    assert [a.json()["detail"] for a in answers] == [
        "unknown plan 'platinum'",
        "the Enterprise plan cannot be bought self-serve",
        "the Team plan takes 2 to 500 seats",
    ]
    with session_factory() as session:
        assert repository.customer_for_account(session, account) is None


async def test_checkout_for_an_account_that_already_pays_is_409_pointing_at_plan_changes(
    api: httpx.AsyncClient, session_factory: sessionmaker[Session]
) -> None:
    account = new_account()
    seed_account(session_factory, account, paying())

    response = await api.post(
        checkout_url(account), json={"plan": "team", "seats": 2}, headers=AUTH
    )

    assert response.status_code == 409
    assert response.json()["detail"] == (
        f"the account is active: change its plan instead (POST /v1/accounts/{account}/plan)"
    )
    with session_factory() as session:
        assert repository.customer_for_account(session, account) is None


async def test_the_same_purchase_gets_the_same_page_and_another_one_ends_it(
    api: httpx.AsyncClient, stripe_client: stripe.StripeClient
) -> None:
    account = new_account()
    first = await api.post(checkout_url(account), json={"plan": "pro"}, headers=AUTH)
    again = await api.post(checkout_url(account), json={"plan": "pro"}, headers=AUTH)
    other = await api.post(checkout_url(account), json={"plan": "team", "seats": 3}, headers=AUTH)

    assert [r.status_code for r in (first, again, other)] == [201, 201, 201]
    assert again.json() == first.json()
    assert other.json()["session_id"] != first.json()["session_id"]
    ended = stripe_client.v1.checkout.sessions.retrieve(first.json()["session_id"])
    assert ended.status == "expired"


async def test_checkout_after_a_completed_one_is_409_while_the_subscription_is_set_up(
    api: httpx.AsyncClient,
) -> None:
    account = new_account()
    page = await api.post(checkout_url(account), json={"plan": "pro"}, headers=AUTH)
    async with httpx.AsyncClient() as browser:
        paid = await browser.post(
            page.json()["url"],
            data={"payment_method": "pm_card_visa", "email": "ada@example.com"},
        )
    assert paid.status_code == 303

    # No webhook reached the account yet: it still reads free, and must not pay twice.
    again = await api.post(checkout_url(account), json={"plan": "pro"}, headers=AUTH)

    assert again.status_code == 409
    assert again.json()["detail"] == (
        "a checkout already completed; the subscription is being set up"
    )


async def test_checkout_while_stripe_is_unreachable_is_a_503_saying_retry(
    simulated_settings: Settings, workflows: FakeAccountWorkflows
) -> None:
    down = simulated_settings.model_copy(
        update={"stripe_simulator_url": f"http://127.0.0.1:{closed_port()}"}
    )
    async with api_with(down, workflows) as api:
        response = await api.post(checkout_url(new_account()), json={"plan": "pro"}, headers=AUTH)

    assert_retry_later(response, "Stripe is unavailable; retry later")


def spring_code(stripe_client: stripe.StripeClient) -> str:
    """A 20%-off promotion code, unique to the test (the simulator is shared by the module)."""
    coupon = stripe_client.v1.coupons.create(params={"percent_off": 20, "duration": "once"})
    code = f"SPRING{uuid4().hex[:6].upper()}"
    stripe_client.v1.promotion_codes.create(
        params={"promotion": {"type": "coupon", "coupon": coupon.id}, "code": code}
    )
    return code


async def test_checkout_offers_promotion_codes_by_default(
    api: httpx.AsyncClient, stripe_client: stripe.StripeClient
) -> None:
    page = await api.post(checkout_url(new_account()), json={"plan": "pro"}, headers=AUTH)

    session = stripe_client.v1.checkout.sessions.retrieve(page.json()["session_id"])
    assert session.allow_promotion_codes is True
    async with httpx.AsyncClient() as browser:
        paid = await browser.post(
            page.json()["url"],
            data={"payment_method": "pm_card_visa", "promotion_code": spring_code(stripe_client)},
        )
    assert paid.status_code == 303
    session = stripe_client.v1.checkout.sessions.retrieve(session.id)
    assert (session.amount_subtotal, session.amount_total) == (2900, 2320)


async def test_with_promotion_codes_off_checkout_refuses_a_code(
    simulated_settings: Settings,
    workflows: FakeAccountWorkflows,
    stripe_client: stripe.StripeClient,
) -> None:
    off = simulated_settings.model_copy(update={"checkout_allow_promotion_codes": False})
    async with api_with(off, workflows) as api:
        page = await api.post(checkout_url(new_account()), json={"plan": "pro"}, headers=AUTH)

    session = stripe_client.v1.checkout.sessions.retrieve(page.json()["session_id"])
    assert session.allow_promotion_codes is False
    async with httpx.AsyncClient() as browser:
        refused = await browser.post(
            page.json()["url"],
            data={"payment_method": "pm_card_visa", "promotion_code": spring_code(stripe_client)},
        )
    assert refused.status_code == 400
    assert "does not accept promotion codes" in refused.text
    assert stripe_client.v1.checkout.sessions.retrieve(session.id).status == "open"


# --- portal ------------------------------------------------------------------------------


async def test_portal_without_a_stripe_customer_is_404(api: httpx.AsyncClient) -> None:
    response = await api.post(f"/v1/accounts/{new_account()}/portal", headers=AUTH)

    assert response.status_code == 404
    assert response.json()["detail"] == "the account has no Stripe customer"


async def test_portal_of_the_accounts_customer_is_a_stripe_page(
    api: httpx.AsyncClient,
    stripe_client: stripe.StripeClient,
    simulated_settings: Settings,
    session_factory: sessionmaker[Session],
) -> None:
    account = new_account()
    customer = stripe_client.v1.customers.create(params={"metadata": {"account_id": account}})
    with session_factory.begin() as session:
        repository.link_customer(session, account, customer.id)

    response = await api.post(f"/v1/accounts/{account}/portal", headers=AUTH)

    assert response.status_code == 201, response.text
    assert response.json()["url"].startswith(str(simulated_settings.stripe_simulator_url))


async def test_portal_for_a_customer_stripe_no_longer_knows_is_409_saying_so(
    api: httpx.AsyncClient, session_factory: sessionmaker[Session]
) -> None:
    account = new_account()
    with session_factory.begin() as session:
        repository.link_customer(session, account, "cus_deleted_in_stripe")

    response = await api.post(f"/v1/accounts/{account}/portal", headers=AUTH)

    assert response.status_code == 409
    assert response.json()["detail"].startswith(
        "Stripe no longer knows this account's billing records: "
    )
    assert "cus_deleted_in_stripe" in response.json()["detail"]


# --- plan changes, cancel, resume: updates of the account workflow -----------------------


async def test_an_upgrade_goes_to_the_workflow_and_answers_with_the_entitlements(
    api: httpx.AsyncClient,
    workflows: FakeAccountWorkflows,
    session_factory: sessionmaker[Session],
) -> None:
    account = new_account()
    seed_account(session_factory, account, paying("pro"))
    workflows.plan_changed = PlanChanged(
        kind="upgrade", applied=False, open_invoice_url="https://invoice.test/in_1"
    )

    response = await api.post(
        f"/v1/accounts/{account}/plan", json={"plan": "team", "seats": 3}, headers=AUTH
    )

    assert response.status_code == 200, response.text
    assert response.json() == {
        "kind": "upgrade",
        "applied": False,
        "open_invoice_url": "https://invoice.test/in_1",
        "entitlements": await entitlements_of(api, account),
    }
    [call] = workflows.calls
    assert (call.method, call.account_id) == ("change_plan", account)
    assert call.argument == PlanChange(
        ChangeKind.UPGRADE, purchase_for(default_catalog(), "team", "month", 3)
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"plan": "platinum"}, "unknown plan 'platinum'"),
        ({"plan": "pro"}, "the account is already on that plan"),
        ({"plan": "team", "seats": 501}, "the Team plan takes 2 to 500 seats"),
    ],
)
async def test_a_plan_change_that_cannot_be_made_is_422_and_asks_nothing(
    api: httpx.AsyncClient,
    workflows: FakeAccountWorkflows,
    session_factory: sessionmaker[Session],
    body: dict[str, Any],
    reason: str,
) -> None:
    account = new_account()
    seed_account(session_factory, account, paying("pro"))

    response = await api.post(f"/v1/accounts/{account}/plan", json=body, headers=AUTH)

    assert response.status_code == 422
    assert response.json()["detail"] == reason
    assert workflows.calls == []


async def test_a_plan_change_without_a_subscription_is_409_and_asks_nothing(
    api: httpx.AsyncClient, workflows: FakeAccountWorkflows
) -> None:
    response = await api.post(
        f"/v1/accounts/{new_account()}/plan", json={"plan": "team", "seats": 2}, headers=AUTH
    )

    assert response.status_code == 409
    assert response.json()["detail"] == (
        "the account has no subscription: start one with a checkout"
    )
    assert workflows.calls == []


ACCOUNT_UPDATES = [
    pytest.param("POST", "/plan", {"plan": "team", "seats": 2}, "change_plan", id="plan"),
    pytest.param("DELETE", "/plan/pending", None, "cancel_plan_change", id="keep-plan"),
    pytest.param("POST", "/cancel", None, "cancel_subscription", id="cancel"),
    pytest.param("POST", "/resume", None, "resume_subscription", id="resume"),
]


@pytest.mark.parametrize(("method", "path", "body", "update"), ACCOUNT_UPDATES[1:])
async def test_keep_plan_cancel_and_resume_answer_the_accounts_entitlements(
    api: httpx.AsyncClient,
    workflows: FakeAccountWorkflows,
    session_factory: sessionmaker[Session],
    method: str,
    path: str,
    body: Any,
    update: str,
) -> None:
    account = new_account()
    seed_account(session_factory, account, paying("team", state=BillingState.CANCELING))

    response = await api.request(method, f"/v1/accounts/{account}{path}", json=body, headers=AUTH)

    assert response.status_code == 200, response.text
    assert response.json() == await entitlements_of(api, account)
    assert response.json()["billing_state"] == "canceling"
    assert [(c.method, c.account_id) for c in workflows.calls] == [(update, account)]


async def test_cancel_at_once_is_not_self_serve_and_asks_nothing(
    api: httpx.AsyncClient, workflows: FakeAccountWorkflows
) -> None:
    response = await api.post(
        f"/v1/accounts/{new_account()}/cancel", json={"at_period_end": False}, headers=AUTH
    )

    assert response.status_code == 422
    assert "operator action cancel_now" in response.json()["detail"]
    assert workflows.calls == []


@pytest.mark.parametrize(("method", "path", "body", "update"), ACCOUNT_UPDATES)
async def test_an_update_the_workflow_refuses_is_409_with_its_reason(
    api: httpx.AsyncClient,
    workflows: FakeAccountWorkflows,
    session_factory: sessionmaker[Session],
    method: str,
    path: str,
    body: Any,
    update: str,
) -> None:
    account = new_account()
    seed_account(session_factory, account, paying("pro"))
    workflows.failure = WorkflowUpdateFailedError(
        ApplicationError("no plan change is scheduled", type="InvalidRequest")
    )

    response = await api.request(method, f"/v1/accounts/{account}{path}", json=body, headers=AUTH)

    assert response.status_code == 409
    assert response.json() == {"detail": "no plan change is scheduled"}
    assert [c.method for c in workflows.calls] == [update]


@pytest.mark.parametrize(
    "reason",
    [
        pytest.param(MAY_STILL_APPLY, id="may-still-apply"),
        pytest.param(NOT_APPLIED, id="not-applied"),
    ],
)
@pytest.mark.parametrize(("method", "path", "body", "update"), ACCOUNT_UPDATES)
async def test_an_update_temporal_does_not_confirm_is_a_503_saying_whether_it_may_apply(
    api: httpx.AsyncClient,
    workflows: FakeAccountWorkflows,
    session_factory: sessionmaker[Session],
    method: str,
    path: str,
    body: Any,
    update: str,
    reason: str,
) -> None:
    account = new_account()
    seed_account(session_factory, account, paying("pro"))
    workflows.failure = TemporalUnavailable(reason)

    response = await api.request(method, f"/v1/accounts/{account}{path}", json=body, headers=AUTH)

    assert_retry_later(response, reason)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/checkout", {"plan": "pro"}),
        ("POST", "/portal", None),
        *[(m, p, b) for m, p, b, _ in (param.values for param in ACCOUNT_UPDATES)],
    ],
)
async def test_every_billing_route_needs_the_app_token(
    api: httpx.AsyncClient,
    workflows: FakeAccountWorkflows,
    session_factory: sessionmaker[Session],
    method: str,
    path: str,
    body: Any,
) -> None:
    account = new_account()
    url = f"/v1/accounts/{account}{path}"
    answers = [
        await api.request(method, url, json=body),
        await api.request(method, url, json=body, headers={"Authorization": "Bearer wrong"}),
    ]

    assert [a.status_code for a in answers] == [401, 401]
    assert workflows.calls == []
    with session_factory() as session:
        assert repository.customer_for_account(session, account) is None
