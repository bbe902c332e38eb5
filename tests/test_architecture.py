"""The code's shape: imports run one way, and no import hides at the bottom of a module.

Imports are read from the source (ast), at module level and inside
functions alike, ``if TYPE_CHECKING:`` blocks included: a cycle is a cycle
in the design even when Python can be talked into loading it.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("sim", "trainers")


def project_modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of the project's packages."""
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports anywhere in its file."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import mod`` imports the module pkg.mod; ``from mod import name`` imports mod
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read_from_the_source():
    graph = import_graph()
    assert "sim.build" in graph["sim.runner"]  # module level
    assert "sim.scenario" in graph["sim.executors"]  # inside a function
    assert "sim.compare" in graph["sim.cli"]  # ``from sim import compare``


def test_no_import_cycle_in_sim_or_trainers():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_layers_point_one_way():
    """scenario -> build -> engine -> runner -> compare -> reproduce -> cli: nothing lower imports anything higher."""
    graph = import_graph()
    layers = ["sim.scenario", "sim.build", "sim.engine", "sim.runner", "sim.compare", "sim.reproduce", "sim.cli"]

    def reaches(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        return seen

    for i, low in enumerate(layers):
        above = set(layers[i + 1 :]) & reaches(low)
        assert not above, f"{low} imports {sorted(above)}, which sit above it"
    # the pieces below the engine never reach up to it
    for name in ("sim.planner", "sim.dispatch", "sim.jobs", "sim.simtime", "sim.schedules.base", "sim.outer.base"):
        assert not {"sim.engine", "sim.runner"} & reaches(name), name


def test_module_level_imports_come_first():
    """An import below code is usually one dodging a cycle; the docstring and imports open every module."""
    for name, path in project_modules().items():
        seen_code = None
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                assert seen_code is None, f"{path.relative_to(ROOT)}:{node.lineno}: import after code at line {seen_code}"
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                seen_code = seen_code or node.lineno


def test_the_engine_is_handed_its_parts_and_stays_small():
    """sim/build.assemble makes every part from the scenario; the engine never reads it (issue 26)."""
    engine = ROOT / "sim" / "engine.py"
    assert len(engine.read_text(encoding="utf-8").splitlines()) < 300
    for module in ("sim.engine", "sim.server"):
        assert "sim.scenario" not in imported_modules(module, project_modules()[module], project_modules())
    for path in sorted((ROOT / "sim").rglob("*.py")) + sorted((ROOT / "trainers").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                assert node.end_lineno - node.lineno < 250, f"{path.name}: class {node.name} is over 250 lines"
