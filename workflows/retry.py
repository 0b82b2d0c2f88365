"""How the billing workflows retry activities: shared by the account workflow and the
reconciliation workflows, so an outage is waited out the same way everywhere."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

# Stripe, Temporal or the database being down is retried with backoff; each caller bounds
# the retries with a budget (`schedule_to_close_timeout`) where a wait would hold others up.
PATIENT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
)
# One attempt; the caller decides what a failure means (an email retried on the account's
# own timer, a local attempt retried as a regular activity).
SINGLE_ATTEMPT = RetryPolicy(maximum_attempts=1)
