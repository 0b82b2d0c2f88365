"""A tiny router for Stripe-style paths (``/v1/customers/{id}``) and the handler context."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from stripe_sim.billing import Engine
from stripe_sim.params import as_list
from stripe_sim.request_schema import Declared, compile_declaration
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


@dataclass(frozen=True, eq=False)  # compared and hashed by identity
class Route:
    method: str
    pattern: str  # "/v1/customers/{cust_id}"
    regex: re.Pattern[str]
    handler: Handler
    # What the handler implements of the parameters Stripe accepts here (request_schema).
    implements: Declared


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def route(
        self, method: str, pattern: str, *, implements: Iterable[str]
    ) -> Callable[[Handler], Handler]:
        """Register a handler. ``implements`` lists the parameters it implements, in Stripe's
        dotted notation (``items.price``, ``payment_behavior=allow_incomplete|...``): every
        other parameter Stripe knows is refused before the handler runs."""
        regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")
        declared = compile_declaration(implements)

        def register(handler: Handler) -> Handler:
            self.routes.append(Route(method, pattern, regex, handler, declared))
            return handler

        return register

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            found = route.regex.match(path)
            if found and route.method == method:
                return route, found.groupdict()
        return None
