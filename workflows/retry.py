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
# A backoff stops doubling here (64× the first delay, past any maximum used), so 2**n never
# overflows timedelta however many attempts failed.
MAX_DOUBLINGS = 6


def backoff(first: timedelta, failures_before: int, maximum: timedelta) -> timedelta:
    """`first`, doubled for each earlier failure, at most `maximum`."""
    return min(first * 2 ** min(failures_before, MAX_DOUBLINGS), maximum)
