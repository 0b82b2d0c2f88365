"""A minimal Stripe Search Query Language: ``field:'value'`` clauses (``metadata['k']``
too, and ``~`` for substring) joined by ``AND`` / ``OR``, plus ``-`` negation."""

from __future__ import annotations

import re
from typing import Any

from stripe_sim.errors import invalid

_CLAUSE = re.compile(
    r"""\s*(-)?([a-z_]+(?:\[['"][^'"]+['"]\])?)\s*(:|~|>=|<=|>|<)\s*(?:'([^']*)'|"([^"]*)"|(\S+))\s*"""
)


def matches_query(obj: dict[str, Any], query: str) -> bool:
    ors = re.split(r"\s+OR\s+", query.strip())
    return any(all(_clause(obj, c) for c in re.split(r"\s+AND\s+", part)) for part in ors)


def _clause(obj: dict[str, Any], clause: str) -> bool:
    found = _CLAUSE.fullmatch(clause)
    if not found:
        raise invalid(f"Invalid query: {clause!r}", param="query")
    negate, field, op, quoted, dquoted, bare = found.groups()
    value = quoted if quoted is not None else dquoted if dquoted is not None else bare
    meta = re.fullmatch(r"metadata\[['\"]([^'\"]+)['\"]\]", field)
    actual = obj.get("metadata", {}).get(meta.group(1)) if meta else obj.get(field)
    if op == ":":
        result = actual is not None and str(actual).lower() == str(value).lower()
        if value == "null":
            result = actual is None
    elif op == "~":
        result = actual is not None and str(value).lower() in str(actual).lower()
    else:
        try:
            number = int(value)
        except ValueError:
            raise invalid(f"Invalid number in query: {value!r}", param="query") from None
        a = int(actual or 0)
        result = {">": a > number, "<": a < number, ">=": a >= number, "<=": a <= number}[op]
    return not result if negate else result
