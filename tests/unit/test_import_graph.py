"""No import cycles among l2c's modules: each can be read, and imported, on its own.

The graph is built from the source (ast), so nothing is imported to test it. A module-level
cycle breaks whichever of its modules is imported first; a cycle through imports inside
functions works, but means two modules each need the other. The local cloud has none of either.
"""

from __future__ import annotations

import ast
from pathlib import Path

import l2c

PACKAGE_DIR = Path(l2c.__file__).resolve().parent


def module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        parts = ("l2c", *path.relative_to(PACKAGE_DIR).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def is_type_checking(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) == "TYPE_CHECKING"


def module_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """What runs when the module is imported: its top level, and the ifs and trys there (not the
    ``if TYPE_CHECKING:`` blocks, which never run)."""
    found, pending = [], list(tree.body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If) and not is_type_checking(node):
            pending += node.body + node.orelse
        elif isinstance(node, ast.Try):
            pending += node.body + [line for handler in node.handlers for line in handler.body]
            pending += node.orelse + node.finalbody
    return found


def all_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, those inside functions included (``if TYPE_CHECKING:`` ones left out)."""
    skipped = {id(line) for node in ast.walk(tree) if is_type_checking(node) for line in node.body}
    return [
        node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in skipped
    ]


def imported_names(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = importer.split(".") if is_package else importer.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    # `from a import b` imports a, and a.b too when b is a module.
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def import_graph(imports_of) -> dict[str, set[str]]:
    modules = module_names()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        targets = set()
        for node in imports_of(tree):
            targets.update(imported_names(node, name, path.name == "__init__.py"))
        graph[name] = {target for target in targets if target in modules and target != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle a depth-first walk meets (each as the modules around it, the first repeated)."""
    found, state, path = [], {}, []

    def visit(module: str) -> None:
        state[module] = "open"
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                found.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return found


def test_the_graph_sees_the_package_and_its_imports():
    graph = import_graph(module_level_imports)
    assert {"l2c.cli", "l2c.local.cloud", "l2c.local.demo", "l2c.training"} <= set(graph)
    assert "l2c.local.cloud" in graph["l2c.local.demo"]
    # A relative import resolves against the package it is in.
    tree = ast.parse("from . import cloud\nfrom ..config import PACE_ENV\n")
    names = [imported_names(node, "l2c.local.demo", False) for node in tree.body]
    assert names == [["l2c.local", "l2c.local.cloud"], ["l2c.config", "l2c.config.PACE_ENV"]]


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_level_import_cycle_in_l2c():
    assert cycles(import_graph(module_level_imports)) == []


def test_the_local_cloud_has_no_import_cycle_even_through_imports_in_functions():
    graph = import_graph(all_imports)
    local = {
        name: {target for target in targets if target.startswith("l2c.local")}
        for name, targets in graph.items()
        if name.startswith("l2c.local")
    }
    assert cycles(local) == []
