"""Imports between the top-level packages only point down the layers (the README's layout
table): read from the source with `ast`, no import executed.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Lowest first; a package may import only from the layers below its own.
LAYERS: list[set[str]] = [
    {"core", "domain"},
    {"db", "notifications", "stripe_sim", "entitlements_client", "admin_client"},
    {"activities"},
    {"workflows"},
    {"api", "worker"},
    {"ops"},
    {"cli"},
]
LAYER_OF = {package: rank for rank, layer in enumerate(LAYERS) for package in layer}


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return {name.split(".")[0] for name in names} & set(LAYER_OF)


def _package_of(path: Path) -> str:
    relative = path.relative_to(ROOT)
    return relative.parts[0].removesuffix(".py")


def upward_imports() -> set[tuple[str, str]]:
    found = set()
    for package in LAYER_OF:
        target = ROOT / package
        paths = sorted(target.rglob("*.py")) if target.is_dir() else [ROOT / f"{package}.py"]
        for path in paths:
            for imported in _imported_packages(path) - {package}:
                if LAYER_OF[imported] >= LAYER_OF[package]:
                    found.add((str(path.relative_to(ROOT)), imported))
    return found


def test_every_top_level_package_has_a_layer() -> None:
    ours = {
        path.name.removesuffix(".py")
        for path in ROOT.iterdir()
        if (path.is_dir() and (path / "__init__.py").exists())
        or (path.suffix == ".py" and path.name != "conftest.py")
    }
    assert ours - {"tests", "bench"} == set(LAYER_OF)


def test_imports_point_down_the_layers() -> None:
    assert upward_imports() == set()
