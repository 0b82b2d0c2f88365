"""Tunable behaviour of the simulator (retry schedules, webhook delivery, fault injection).

Every field can be changed at run time (tests mutate ``server.settings`` directly); the engine
reads the values when it needs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

DAY = 86400
HOUR = 3600

API_VERSION = "2026-10-28.endive"


@dataclass
class FaultSettings:
    """Webhook delivery faults, to prove that consumers survive Stripe's real-world behaviour.

    Rates are probabilities in [0, 1], drawn from a generator seeded with ``seed`` so that a
    test run is reproducible. Dropped events are still listed by ``GET /v1/events``.
    """

    duplicate_rate: float = 0.0
    drop_rate: float = 0.0
    # Deliveries are held until this many are queued (or the queue goes quiet for
    # ``reorder_hold_seconds``) and then sent in shuffled order.
    reorder_window: int = 0
    reorder_hold_seconds: float = 0.05
    # Extra wall-clock delay before every first delivery attempt.
    delay_seconds: float = 0.0
    seed: int | None = 0


@dataclass
class SimulatorSettings:
    account_id: str = "acct_1SimDatafaceTest"
    account_name: str = "Dataface (simulated)"
    api_version: str = API_VERSION

    # Smart Retries: Stripe's recommended default is "8 tries within 2 weeks". The first try is
    # the regular attempt; these are the retries, in days after that first failed attempt.
    retry_schedule_days: tuple[float, ...] = (1, 3, 5, 7, 9, 11, 14)
    # What happens to the subscription when the last retry fails (Dashboard > Revenue recovery).
    retries_exhausted_action: Literal["cancel", "unpaid", "past_due"] = "cancel"

    # Stripe: an incomplete subscription expires when its first invoice is unpaid 23 hours later.
    incomplete_expiry_seconds: int = 23 * HOUR
    # Pending updates (payment_behavior=pending_if_incomplete) expire after 23 hours as well.
    pending_update_expiry_seconds: int = 23 * HOUR
    # Renewal invoices are drafts for about an hour before they are finalized and charged.
    renewal_finalize_delay_seconds: int = HOUR
    # customer.subscription.trial_will_end is sent three days before the trial ends.
    trial_will_end_notice_seconds: int = 3 * DAY

    # Webhook delivery: attempts per endpoint and wall-clock backoff between attempts.
    # Stripe retries for days in live mode; the defaults here are short enough for demos.
    webhook_max_attempts: int = 6
    webhook_backoff_seconds: tuple[float, ...] = (1, 5, 30, 60, 300)
    webhook_timeout_seconds: float = 10.0

    # How plan changes made in the billing portal are prorated.
    portal_proration_behavior: Literal["create_prorations", "always_invoice", "none"] = (
        "create_prorations"
    )

    # Automatic tax (``automatic_tax[enabled]``): the percentage Stripe Tax charges in each
    # country (ISO code) of a customer's address. A country not listed is one the account does
    # not collect tax in: no tax. Set a dict at run time to model other registrations.
    tax_rates_by_country: dict[str, float] = field(
        default_factory=lambda: {
            "AT": 20.0,
            "BE": 21.0,
            "DE": 19.0,
            "ES": 21.0,
            "FR": 20.0,
            "GB": 20.0,
            "IE": 23.0,
            "IT": 22.0,
            "NL": 21.0,
        }
    )

    # How often objects that are not on a test clock (real time) are checked for due work.
    realtime_tick_seconds: float = 1.0

    faults: FaultSettings = field(default_factory=FaultSettings)
