"""`dataface-billing`: run the service and its tools."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from admin_client import cli as admin_cli
from core.config import describe_settings_errors, get_settings
from core.logging import configure_logging
from stripe_sim.__main__ import add_simulator_arguments
from stripe_sim.__main__ import serve as serve_simulator


def _run_local(args: argparse.Namespace) -> None:
    from ops.local_stack import LocalPorts, prepare_data_dir, run_local_stack

    ports = LocalPorts(api=args.port, temporal=args.temporal_port, temporal_ui=args.ui_port)
    data_dir = Path(args.data_dir)
    prepare_data_dir(data_dir, reset_stripe=args.reset_stripe)
    # Ctrl-C is how the stack is stopped, not a failure to report with a traceback; once the
    # API is up the stack shuts down in order by itself (`stop_signals_end_serving_only`).
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_local_stack(get_settings(), data_dir, ports))


def _run_api(args: argparse.Namespace) -> None:
    import uvicorn

    # log_config=None: uvicorn's lines go through the handler `configure_logging` set up.
    uvicorn.run(
        "api.main:create_app", factory=True, host=args.host, port=args.port, log_config=None
    )


def _run_worker(args: argparse.Namespace) -> None:
    from worker import run_worker

    asyncio.run(run_worker(get_settings()))


def _run_email_sender(args: argparse.Namespace) -> None:
    from worker import run_email_sender

    asyncio.run(run_email_sender(get_settings()))


def _migrate(args: argparse.Namespace) -> None:
    from db.engine import migrate

    migrate(get_settings().database_url)


def _setup_temporal(args: argparse.Namespace) -> None:
    from core.temporal import connect, register_search_attributes
    from ops.schedules import ensure_schedules
    from workflows.account import SEARCH_ATTRIBUTES

    async def setup() -> None:
        settings = get_settings()
        client = await connect(settings)
        await register_search_attributes(client, SEARCH_ATTRIBUTES, settings.temporal_namespace)
        await ensure_schedules(client, settings)

    asyncio.run(setup())
    _exit_without_finalizing()


def _backfill(args: argparse.Namespace) -> None:
    from core.stripe_client import make_stripe_client
    from core.temporal import connect
    from db.engine import make_engine, make_session_factory
    from ops.backfill import run_backfill

    async def backfill() -> None:
        settings = get_settings()
        summary = await run_backfill(
            make_stripe_client(settings),
            make_session_factory(make_engine(settings.database_url)),
            await connect(settings),
            settings.task_queue,
            restart=args.restart,
            progress=sys.stderr,
        )
        print(f"backfill done: {summary.describe()}")
        for error in summary.errors:
            print(f"  error: {error}")

    asyncio.run(backfill())
    _exit_without_finalizing()


def _exit_without_finalizing() -> None:
    """A one-shot that connected to Temporal ends here, its work done: the SDK's runtime
    threads can abort the interpreter while it finalizes (SIGABRT, "PyGILState_Release ...
    finalizing"; seen in about 1 run in 6), and compose starts the worker only after
    `setup-temporal` exited 0."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(0)


def _catalog(args: argparse.Namespace) -> None:
    from core.stripe_client import make_stripe_client
    from domain.catalog import default_catalog
    from ops.catalog_sync import apply_catalog_changes, plan_catalog_changes

    client = make_stripe_client(get_settings())
    catalog = default_catalog()
    changes = plan_catalog_changes(client, catalog)
    if not changes:
        print("Stripe matches the catalog: nothing to do.")
        return
    for change in changes:
        print(change.describe())
    if args.action == "apply":
        apply_catalog_changes(client, catalog, changes)
        print(f"applied {len(changes)} change(s)")
    else:
        print(f"{len(changes)} change(s); run `dataface-billing catalog apply` to make them")


def _webhook_endpoint(args: argparse.Namespace) -> None:
    from core.stripe_client import make_stripe_client
    from ops.webhook_endpoint import AmbiguousWebhookEndpoint, ensure_webhook_endpoint

    try:
        ensured = ensure_webhook_endpoint(make_stripe_client(get_settings()), args.url)
    except AmbiguousWebhookEndpoint as err:
        print(err, file=sys.stderr)
        raise SystemExit(1) from None
    if ensured.secret is not None:
        print(f"created webhook endpoint {ensured.endpoint_id} for {args.url}", file=sys.stderr)
        print(
            "Stripe shows its signing secret only now: put it in STRIPE_WEBHOOK_SECRET",
            file=sys.stderr,
        )
        # Alone on stdout, so `... >> .env` keeps it.
        print(f"STRIPE_WEBHOOK_SECRET={ensured.secret}")
        return
    state = "updated: " + "; ".join(ensured.changes) if ensured.changes else "up to date"
    print(
        f"webhook endpoint {ensured.endpoint_id} for {args.url} exists ({state}).", file=sys.stderr
    )
    print(
        "Stripe shows a signing secret only when it creates the endpoint: take it from the "
        "Dashboard (Developers > Webhooks) or roll it there, and put it in STRIPE_WEBHOOK_SECRET.",
        file=sys.stderr,
    )
    for warning in ensured.warnings:
        print(f"warning: {warning}", file=sys.stderr)


def _admin(args: argparse.Namespace) -> None:
    raise SystemExit(admin_cli.run_command(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dataface-billing", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    local = commands.add_parser(
        "local", help="run everything locally: Temporal + UI, Stripe simulator, worker, API"
    )
    local.add_argument("--port", type=int, default=8000, help="API port")
    local.add_argument("--temporal-port", type=int, default=7233)
    local.add_argument("--ui-port", type=int, default=8233, help="Temporal Web UI port")
    local.add_argument(
        "--data-dir",
        default=".data",
        help="where Temporal, the local Stripe and the mail sink keep their state",
    )
    local.add_argument(
        "--reset-stripe",
        action="store_true",
        help="start the local Stripe empty (forget its customers and subscriptions)",
    )
    local.set_defaults(handler=_run_local)

    api = commands.add_parser("api", help="run the HTTP API")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.set_defaults(handler=_run_api)

    commands.add_parser("worker", help="run the Temporal worker").set_defaults(handler=_run_worker)
    commands.add_parser(
        "email-sender", help="send the queued customer emails (beside the workers)"
    ).set_defaults(handler=_run_email_sender)
    commands.add_parser("migrate", help="apply database migrations").set_defaults(handler=_migrate)
    commands.add_parser(
        "setup-temporal",
        help="register the search attributes and create the reconciliation schedules",
    ).set_defaults(handler=_setup_temporal)
    backfill = commands.add_parser(
        "backfill", help="start an account workflow for every existing Stripe customer"
    )
    backfill.add_argument(
        "--restart", action="store_true", help="forget where the last run stopped"
    )
    backfill.set_defaults(handler=_backfill)

    catalog = commands.add_parser("catalog", help="publish catalog.toml to Stripe")
    catalog.add_argument("action", choices=["plan", "apply"])
    catalog.set_defaults(handler=_catalog)

    webhook_endpoint = commands.add_parser(
        "webhook-endpoint", help="the Stripe webhook endpoint that delivers to the gateway"
    )
    webhook_endpoint.add_argument(
        "action",
        choices=["ensure"],
        help="find the endpoint for --url, or create it (and print its signing secret)",
    )
    webhook_endpoint.add_argument(
        "--url", required=True, help="the gateway's public URL: https://HOST/webhooks/stripe"
    )
    webhook_endpoint.set_defaults(handler=_webhook_endpoint)

    simulator = commands.add_parser("stripe-simulator", help="run the local Stripe simulator")
    add_simulator_arguments(simulator)
    simulator.set_defaults(handler=serve_simulator)

    admin = commands.add_parser("admin", help="the operator console, over the admin API")
    admin_cli.configure(admin)
    admin.set_defaults(handler=_admin)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
    except ValidationError as err:
        # One paragraph naming the variables, not a traceback: this is the operator's typo.
        print(describe_settings_errors(err), file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings)
    args.handler(args)


if __name__ == "__main__":
    main()
