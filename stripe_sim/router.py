"""A tiny router for Stripe-style paths (``/v1/customers/{id}``) and the handler context."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stripe_sim.billing import Engine
from stripe_sim.errors import StripeError
from stripe_sim.params import as_list
from stripe_sim.store import Obj, Store


@dataclass
class Ctx:
    store: Store
    engine: Engine
    method: str
    path: str
    params: dict[str, Any]
    # Clocks whose due work should run after this request (objects changed "now" on them).
    touched_clocks: set[str | None] = field(default_factory=set)

    @property
    def expand(self) -> list[str]:
        return [str(e) for e in as_list(self.params, "expand")]


Handler = Callable[..., Obj]


class Router:
    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")

        def register(handler: Handler) -> Handler:
            self._routes.append((method, regex, handler))
            return handler

        return register

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        for route_method, regex, handler in self._routes:
            found = regex.match(path)
            if found and route_method == method:
                return handler, found.groupdict()
        raise StripeError(
            404,
            "invalid_request_error",
            f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs "
            "or we can help at https://support.stripe.com/.",
        )
