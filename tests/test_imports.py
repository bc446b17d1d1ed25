"""The package's import structure: no cycles, no upward imports, the heavy libraries only
where they belong (ARCHITECTURE.md). Module-level imports only: an import inside a function
runs when it is called, which is how the parent defers torch and the worker defers training.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "bnstudy"

#: Each room and the rooms it may import (besides itself). ``shared`` is the torch-free
#: vocabulary every room uses; ``facade`` the verbs (study, cli) over all of it.
ROOMS: dict[str, set[str]] = {
    "shared": set(),
    "data": {"shared"},
    "models": {"shared", "spec"},
    "spec": {"shared", "data", "models"},
    "training": {"shared", "spec", "data", "models"},
    "store": {"shared"},
    "execution": {"shared", "spec", "data", "store", "training"},
    "stats": {"shared", "spec"},
    "report": {"shared", "spec", "stats"},
    "facade": {
        "shared",
        "spec",
        "data",
        "models",
        "training",
        "store",
        "execution",
        "stats",
        "report",
        "facade",
    },
}
SHARED = {
    "bnstudy",
    "bnstudy.catalogue",
    "bnstudy.atomic",
    "bnstudy.suggest",
    "bnstudy.lazy",
    "bnstudy.results_format",
}
FACADE = {
    "bnstudy.study",
    "bnstudy.cli",
    "bnstudy.terminal",
    "bnstudy.protocol",
    "bnstudy.__main__",
}

#: What the parent process loads to validate, plan, schedule, analyse and report: no torch.
PARENT = [
    "bnstudy.cli",
    "bnstudy.study",
    "bnstudy.execution.runner",
    "bnstudy.store",
    "bnstudy.stats.analysis",
    "bnstudy.report",
    "bnstudy.spec.loading",
]
#: What a worker loads to train: no pydantic, no yaml.
WORKER = [
    "bnstudy.execution.worker",
    "bnstudy.training.train",
    "bnstudy.training.packing",
    "bnstudy.spec.trial",
]


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room(module: str) -> str:
    if module in SHARED:
        return "shared"
    if module in FACADE:
        return "facade"
    return module.split(".")[1]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def top_level_imports(path: Path, modules: set[str]) -> tuple[set[str], set[str]]:
    """(bnstudy modules, third-party top-level names) imported when ``path`` is imported."""
    tree = ast.parse(path.read_text())
    ours: set[str] = set()
    theirs: set[str] = set()
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and not _is_type_checking(node):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    add(alias.name)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(
                        package.split(".")[: len(package.split(".")) - node.level + 1]
                        + ([base] if base else [])
                    )
                add(base)
                for alias in node.names:
                    if f"{base}.{alias.name}" in modules:
                        add(f"{base}.{alias.name}")

    def add(name: str) -> None:
        if name == "bnstudy" or name.startswith("bnstudy."):
            # importing a.b.c runs the __init__ of a.b first, except where a.b is this
            # module's own package (already initialising: `from . import x` loads only x)
            parts = name.split(".")
            prefixes = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
            ours.update(p for p in prefixes if not this.startswith(p + "."))
        else:
            theirs.add(name.split(".")[0])

    visit(tree.body)
    ours.discard(this)
    return {m for m in ours if m in modules}, theirs


@pytest.fixture(scope="module")
def graph() -> dict[str, tuple[set[str], set[str]]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: top_level_imports(path, set(paths)) for name, path in paths.items()}


def reachable(graph, start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph[module][0])
    return seen


def test_no_import_cycles(graph):
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for other in sorted(graph[module][0]):
            if state.get(other) == 1:
                cycle = path[path.index(other) :] + [other] if other in path else [module, other]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if other not in state:
                visit(other, path + [other])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_every_module_belongs_to_a_room(graph):
    assert {room(m) for m in graph} <= set(ROOMS), sorted({room(m) for m in graph} - set(ROOMS))


def test_no_upward_imports(graph):
    wrong = [
        f"{module} -> {other}"
        for module, (ours, _) in sorted(graph.items())
        for other in sorted(ours)
        if room(other) != room(module) and room(other) not in ROOMS[room(module)]
    ]
    assert not wrong, wrong


@pytest.mark.parametrize("start", PARENT)
def test_the_parent_loads_no_torch(graph, start):
    torch_users = sorted(m for m in reachable(graph, start) if "torch" in graph[m][1])
    assert not torch_users, f"{start} reaches torch through {torch_users}"


@pytest.mark.parametrize("start", WORKER)
def test_a_worker_loads_no_pydantic_or_yaml(graph, start):
    users = sorted(m for m in reachable(graph, start) if {"pydantic", "yaml"} & graph[m][1])
    assert not users, f"{start} reaches pydantic or yaml through {users}"


def test_the_walk_sees_real_imports(graph):
    """Guards the walker itself: known edges and known third-party imports are found."""
    assert "bnstudy.spec.trial" in graph["bnstudy.training.train"][0]
    assert "torch" in graph["bnstudy.training.train"][1]
    assert "pydantic" in graph["bnstudy.spec.protocol"][1]
    assert "bnstudy.store" in reachable(graph, "bnstudy.execution.runner")
