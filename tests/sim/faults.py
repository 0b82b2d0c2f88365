"""Fault-injecting wrappers around the worker's real activities, registered under the same
names (as tests/workflows/harness.py swaps a fake in), and around the SMTP client the email
sender uses (`FaultyMail`).

Nothing here knows an activity's arguments: an activity is classified by the module its
class lives in (Stripe, the database), so activities added later are covered too.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

import stripe
from sqlalchemy.exc import OperationalError
from temporalio import activity

from core.smtp import SmtpSender
from notifications.message import KEY_HEADER

STRIPE_MODULES = (
    "activities.stripe_sync",
    "activities.stripe_changes",
    "activities.reconciliation",
)
WRITE_MODULES = ("activities.stripe_changes",)
DB_MODULES = ("activities.account_store",)


def _module_of(fn: Callable[..., Any]) -> str:
    owner = getattr(fn, "__self__", None)
    return type(owner).__module__ if owner is not None else fn.__module__


@dataclass
class Faults:
    """Switches the runner flips between steps; read by the wrappers (some in threads)."""

    on: set[str] = field(default_factory=set)
    # Called (on the runner's loop) after a Stripe change succeeded and before its answer
    # returns: delivers the webhooks the change caused first.
    deliver_first: Callable[[], Awaitable[None]] | None = None
    loop: asyncio.AbstractEventLoop | None = None
    # The next email SMTP accepts is followed by a crash before it is recorded as sent.
    crash_next_email: bool = False
    crashed_after_accept: Counter[str] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # Activity executions under way, and those a worker restart lost (see `restart_worker`).
    _running: set[int] = field(default_factory=set)
    _lost: set[int] = field(default_factory=set)
    _tokens: itertools.count[int] = field(default_factory=itertools.count)

    def restart_worker(self) -> None:
        """The worker dies and a new one takes over: the answers of the activities under way
        never reach the server, which retries them once their timeout passes. Emulated in
        the same worker, the answer is replaced by a retryable failure at once: a real
        restart leaves the time-skipping server holding time still, in real time, until the
        lost attempt's timeout (30 s, 2 min for an email) or, with a workflow cache, a task
        sent to the dead worker's sticky queue (never handed back by the test server)."""
        with self._lock:
            self._lost |= self._running

    def begin(self) -> int:
        with self._lock:
            token = next(self._tokens)
            self._running.add(token)
        return token

    def end(self, token: int) -> bool:
        """Whether this execution's answer was lost with a restarted worker."""
        with self._lock:
            self._running.discard(token)
            if token in self._lost:
                self._lost.discard(token)
                return True
        return False

    def before(self, name: str, module: str) -> None:
        with self._lock:
            self.calls[name] += 1
        if module in STRIPE_MODULES and "stripe" in self.on:
            raise stripe.APIConnectionError("simulated Stripe outage (503)")
        if module in WRITE_MODULES and "stripe_writes" in self.on:
            raise stripe.APIConnectionError("simulated Stripe timeout on a write")
        if module in DB_MODULES and "db" in self.on:
            raise OperationalError("simulated", {}, ConnectionError("the database is down"))

    def after(self, name: str, module: str) -> None:
        """Runs on the worker's thread for sync activities, on its loop for async ones."""
        if module in WRITE_MODULES:
            if "webhook_first" in self.on and self.deliver_first and self.loop:
                self._run_on_loop(self.deliver_first())
            if "answer_lost" in self.on and activity.info().attempt == 1:
                raise stripe.APIConnectionError("simulated: Stripe applied it, the answer was lost")

    def _run_on_loop(self, coro: Awaitable[None]) -> None:
        assert self.loop is not None
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            # An async activity: schedule it, the answer races the delivery.
            _background.add(task := asyncio.ensure_future(coro))
            task.add_done_callback(_background.discard)
        else:
            asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)  # type: ignore[arg-type]


_background: set[asyncio.Future[None]] = set()


@dataclass
class FaultyMail:
    """The SMTP client of the email sender, with the simulation's SMTP faults: down, or a
    crash between SMTP accepting a message and the sender recording it as sent."""

    mail: SmtpSender
    faults: Faults

    async def send_message(self, message: Message) -> None:
        if "smtp" in self.faults.on:
            raise ConnectionRefusedError("simulated SMTP outage")
        await self.mail.send_message(message)
        if self.faults.crash_next_email:
            self.faults.crash_next_email = False
            self.faults.crashed_after_accept[str(message[KEY_HEADER])] += 1
            raise RuntimeError("simulated crash between SMTP accept and commit")


class WorkerLost(Exception):
    """A plain (retryable) error, as the server's timeout of a lost attempt is."""


def _lost() -> WorkerLost:
    return WorkerLost("simulated: the worker restarted, this attempt's answer was lost")


def wrap_activities(
    activities: list[Callable[..., Any]], faults: Faults
) -> list[Callable[..., Any]]:
    return [_wrap(fn, faults) for fn in activities]


def _wrap(fn: Callable[..., Any], faults: Faults) -> Callable[..., Any]:
    defn = activity._Definition.must_from_callable(fn)
    name, module = defn.name, _module_of(fn)
    assert name is not None
    # Signature and type hints are the real activity's (`__wrapped__`), so arguments decode
    # to the same dataclasses; the definition itself is not copied (`updated=()`).
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn, updated=())
        async def wrapper_async(*args: Any) -> Any:
            token = faults.begin()
            try:
                faults.before(name, module)
                result = await fn(*args)
                faults.after(name, module)
            except asyncio.CancelledError:
                faults.end(token)  # cancelled: the server asked, and is told
                raise
            except Exception:
                if faults.end(token):
                    raise _lost() from None
                raise
            if faults.end(token):
                raise _lost()
            return result

        return activity.defn(name=name)(wrapper_async)

    @functools.wraps(fn, updated=())
    def wrapper(*args: Any) -> Any:
        token = faults.begin()
        try:
            faults.before(name, module)
            result = fn(*args)
            faults.after(name, module)
        except Exception:
            if faults.end(token):
                raise _lost() from None
            raise
        if faults.end(token):
            raise _lost()
        return result

    return activity.defn(name=name)(wrapper)
