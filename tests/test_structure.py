"""What the package promises about itself: names and the direction of imports."""

from __future__ import annotations

import ast
import graphlib
import pathlib

import sprockets_http

PACKAGE = pathlib.Path(sprockets_http.__file__).parent


def test_version_info_matches_the_version() -> None:
    assert sprockets_http.version_info == tuple(
        int(part) for part in sprockets_http.__version__.split(".")
    )
    assert sprockets_http.version_info >= (3, 0, 0)


def imported_modules(path: pathlib.Path) -> set[str]:
    """The sprockets_http modules ``path`` imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "sprockets_http":
                found.update(f"sprockets_http.{alias.name}" for alias in node.names)
            elif node.module.startswith("sprockets_http."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(
                alias.name
                for alias in node.names
                if alias.name.startswith("sprockets_http.")
            )
    return found


def test_modules_import_each_other_in_one_direction() -> None:
    modules = {
        f"sprockets_http.{path.stem}": path
        for path in PACKAGE.glob("*.py")
        if path.stem != "__init__"
    }
    graph = {
        # A module run with python -m may import itself under its own name.
        name: (imported_modules(path) & modules.keys()) - {name}
        for name, path in modules.items()
    }
    # static_order() raises CycleError, naming the modules of a circle.
    order = list(graphlib.TopologicalSorter(graph).static_order())
    assert order.index("sprockets_http.runner") < order.index(
        "sprockets_http.supervisor"
    )
