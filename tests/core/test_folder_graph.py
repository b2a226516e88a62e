"""The folder graph, read from the source with `ast` (nothing imported): arrows point one way (DESIGN.md §3).

`lara/` (the core) imports none of the outer folders; `adapters/` may import `lara/`; `benchmarks/` may import
`adapters/` and `lara/`; `real_robot/` imports `lara/` only. Every import counts, as `tests/core/test_imports.py`
reads them but deeper: at module level, inside a function (deferred), under `if TYPE_CHECKING:`, relative ones
resolved; and so does a string that names a module of another folder (what `importlib.import_module` loads). Only
the command line, at the top, reaches every folder (and the demo, until it moves to benchmarks/).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {"lara.adapters": "adapters", "lara.benchmarks": "benchmarks", "lara.real_robot": "real_robot",
            "lara": "lara"}  # the outer folders first: lara.adapters is not the core
ALLOWED = {"lara": set(), "adapters": {"lara"}, "benchmarks": {"adapters", "lara"}, "real_robot": {"lara"}}
TOP = {  # the command line, at the top: it may reach every folder
    "lara/cli.py": "the `lara` command: one module per subcommand, loaded by name",
    "lara/data/cli.py": "`lara data`: its subcommands, `generate` among them, loaded by name",
}
PENDING: dict[str, str] = {}  # reaches against the arrows that a move in progress removes (none now)
MODULE_NAME = re.compile(r"lara(\.[A-Za-z_]\w*)+")


def folder_of(module: str) -> str | None:
    """The top-level folder that holds a dotted module name, as setup.py installs the folders."""
    for package, folder in PACKAGES.items():
        if module == package or module.startswith(package + "."):
            return folder
    return None


def module_of(path: Path) -> tuple[str, str]:
    """A file -> (its dotted module name, the package its relative imports start from)."""
    folder = path.relative_to(REPO).parts[0]
    package = next(name for name, f in PACKAGES.items() if f == folder)
    parts = [p for p in path.relative_to(REPO / folder).with_suffix("").parts if p != "__init__"]
    name = ".".join([package, *parts])
    return name, name if path.name == "__init__.py" else name.rpartition(".")[0]


def targets(path: Path):
    """(line, what, dotted name) for every import in the file, at any depth, and every string naming a module."""
    _, package = module_of(path)
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, "imports", alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            names = {f"{base}.{alias.name}" if folder_of(base) and known(f"{base}.{alias.name}") else base
                     for alias in node.names}  # `from lara.serving import wire`: the submodule, else the package
            for name in sorted(names):
                yield node.lineno, "imports", name
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            name = node.value.partition(":")[0]  # 'module:factory' names the module
            if MODULE_NAME.fullmatch(name) and known(name):
                yield node.lineno, "names", name


def known(name: str) -> bool:
    """Whether a dotted name is a project module or package (a string like 'lara.align_weight' is a config key)."""
    folder = folder_of(name)
    package = next(p for p, f in PACKAGES.items() if f == folder)
    relative = Path(folder, *name[len(package) + 1:].split(".")) if name != package else Path(folder)
    return (REPO / relative).with_suffix(".py").is_file() or (REPO / relative / "__init__.py").is_file()


def sources() -> list[Path]:
    return sorted(p for folder in ALLOWED for p in (REPO / folder).rglob("*.py"))


def arrows() -> list[tuple[str, str, str]]:
    """(from folder, to folder, 'file:line imports X') for every reach from one top-level folder into another."""
    found = []
    for path in sources():
        own = path.relative_to(REPO).parts[0]
        for line, what, name in targets(path):
            other = folder_of(name)
            if other is not None and other != own:
                found.append((own, other, f"{path.relative_to(REPO)}:{line} {what} {name}"))
    return found


def violations(found: list[tuple[str, str, str]]) -> list[str]:
    return [where for own, other, where in found
            if other not in ALLOWED[own] and where.partition(":")[0] not in {*TOP, *PENDING}]


def cycle(found: list[tuple[str, str, str]]) -> list[str]:
    """A cycle among the folders (['a', 'b', 'a']) through files below the top, or []."""
    edges: dict[str, set[str]] = {}
    for own, other, where in found:
        if where.partition(":")[0] not in {*TOP, *PENDING}:
            edges.setdefault(own, set()).add(other)

    def walk(path: list[str]) -> list[str]:
        for other in sorted(edges.get(path[-1], ())):
            if other in path:
                return path[path.index(other):] + [other]
            if found_cycle := walk(path + [other]):
                return found_cycle
        return []

    return next((c for folder in sorted(edges) if (c := walk([folder]))), [])


def test_arrows_point_one_way():
    assert len(sources()) > 100 and (REPO / "lara" / "policy.py") in sources()  # the walk saw the project
    assert violations(arrows()) == []
    assert cycle(arrows()) == []


def test_every_exemption_names_a_file_that_is_there():
    """An entry of TOP or PENDING that moved or went away is no exemption to keep."""
    assert [path for path in [*TOP, *PENDING] if not (REPO / path).is_file()] == []


def test_the_walk_sees_deferred_relative_and_named_imports(tmp_path, monkeypatch):
    """A function-level import, a relative import resolved to its package, a module named in a string."""
    monkeypatch.setitem(globals(), "REPO", tmp_path)
    for folder in ALLOWED:
        (tmp_path / folder).mkdir()
    (tmp_path / "benchmarks" / "libero").mkdir()
    (tmp_path / "benchmarks" / "libero" / "expert.py").write_text("")
    (tmp_path / "real_robot" / "client.py").write_text("")
    (tmp_path / "adapters" / "demo.py").write_text("")
    (tmp_path / "lara" / "policy.py").write_text(
        "def load():\n    from lara.real_robot.client import RemotePolicy\n"
        "SCRIPTED = {'libero': ('lara.benchmarks.libero.expert', 'ScriptedExpert'), 'key': 'lara.align_weight'}\n")
    (tmp_path / "real_robot" / "server.py").write_text("from ..benchmarks.libero import expert\n")
    (tmp_path / "adapters" / "trainer.py").write_text("from . import demo\nimport lara\n")
    assert violations(arrows()) == ["lara/policy.py:2 imports lara.real_robot.client",
                                    "lara/policy.py:3 names lara.benchmarks.libero.expert",
                                    "real_robot/server.py:1 imports lara.benchmarks.libero.expert"]
    assert cycle(arrows()) == []  # wrong ways, but one way each
    (tmp_path / "benchmarks" / "libero" / "env.py").write_text("from lara.real_robot import client\n")
    assert cycle(arrows()) == ["benchmarks", "real_robot", "benchmarks"]
