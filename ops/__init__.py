"""Composition: what puts the service together and runs it — the local stack, the Stripe setup
(catalog, webhook endpoint), the Temporal schedules, the backfill, the local mail sink. Above
`api` and `worker`; used by `cli.py`, `bench/` and the tests."""
