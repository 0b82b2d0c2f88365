"""Backoff between attempts: the account's failed steps, its emails' retries."""

from __future__ import annotations

from datetime import timedelta

# A backoff stops doubling here (64× the first delay, past any maximum used), so 2**n never
# overflows timedelta however many attempts failed.
MAX_DOUBLINGS = 6


def backoff(first: timedelta, failures_before: int, maximum: timedelta) -> timedelta:
    """`first`, doubled for each earlier failure, at most `maximum`."""
    return min(first * 2 ** min(failures_before, MAX_DOUBLINGS), maximum)
