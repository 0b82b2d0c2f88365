"""What the two table generators (`request_schema_gen`, `response_schema_gen`) share: how a
table is written, and the command line that writes it or checks that it is current."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def render_table(table: dict[str, Any]) -> str:
    return json.dumps(table, indent=1, sort_keys=True) + "\n"


def write_or_check(
    path: Path,
    build_table: Callable[[], dict[str, Any]],
    module: str,
    description: str,
    argv: list[str] | None = None,
) -> int:
    """`python -m MODULE` writes the table; with `--check` it exits 1 if the table is stale."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true", help="exit 1 if the table is stale")
    args = parser.parse_args(argv)
    text = render_table(build_table())
    if args.check:
        if path.read_text() != text:
            print(f"{path} is out of date: run python -m {module}")
            return 1
        return 0
    path.write_text(text)
    print(f"wrote {path} ({len(text) // 1024} KiB)")
    return 0
