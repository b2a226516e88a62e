"""The import structure, read from the source with `ast` (nothing imported): no module-level import cycle among
lara, lara.adapters, lara.benchmarks and lara.real_robot, and no benchmark importing another's private names."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOTS = {"lara": "lara", "lara.adapters": "adapters", "lara.benchmarks": "benchmarks", "lara.real_robot": "real_robot"}


def modules() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package's __init__), under the names setup.py installs them as."""
    found = {}
    for package, folder in ROOTS.items():
        for path in (REPO / folder).rglob("*.py"):
            parts = [p for p in path.relative_to(REPO / folder).with_suffix("").parts if p != "__init__"]
            found[".".join([package, *parts])] = (path, path.name == "__init__.py")
    return found


def module_level_imports(tree: ast.Module):
    """Import statements run at import time: not inside a function or class (inside if/try/with, and
    `if TYPE_CHECKING:` too, they count)."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for child in [*node.body, *getattr(node, "orelse", []), *getattr(node, "finalbody", [])]:
                stack.append(child)
            for handler in getattr(node, "handlers", []):
                stack += handler.body


def imports_of(name: str, path: Path, is_package: bool, known: dict) -> dict[str, set[str]]:
    """The project modules `name` imports at module level -> the names it takes from each."""
    package = name if is_package else name.rpartition(".")[0]
    edges: dict[str, set[str]] = {}
    for node in module_level_imports(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            pairs = [(alias.name, "") for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            pairs = [(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base, a.name) for a in node.names]
        for target, imported in pairs:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.setdefault(target, set()).add(imported)
    return edges


def graph() -> dict[str, dict[str, set[str]]]:
    known = modules()
    return {name: imports_of(name, path, is_package, known) for name, (path, is_package) in known.items()}


def cycles(edges: dict[str, dict[str, set[str]]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_module_level_import_cycle():
    edges = graph()
    assert len(edges) > 100 and "lara.data.statistics" in edges  # the walk saw the project
    assert cycles(edges) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b": set()}, "b": {"c": set()}, "c": {"a": set()}, "d": {"a": set()}}) == [["a", "b", "c"]]


def test_benchmarks_import_no_private_name_of_another_benchmark():
    benchmarks = ("lara.benchmarks.libero", "lara.benchmarks.simpler")
    private = [(name, target, imported) for name, edges in graph().items() for target, names in edges.items()
               for imported in names for own in benchmarks for other in benchmarks
               if own != other and name.startswith(own) and target.startswith(other) and imported.startswith("_")]
    assert private == []
