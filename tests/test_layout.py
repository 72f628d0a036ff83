"""The layout reads as the data flow: no import cycles, ``core`` free of streamlit, few loose modules.

The import graph is built from the source with :mod:`ast` (every ``import`` statement, also those
inside functions, since a lazy import that closes a cycle is still a cycle in the design). An edge
goes from a module to each project module it names; importing ``a.b.c`` is an edge to ``a.b.c``
only (the parent packages Python runs first are not counted, as import-linter and pydeps count).
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "ui", "pages")
#: The top of ``core`` holds the stages' packages; only these few modules stand beside them.
MAX_LOOSE_CORE_MODULES = 6


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    found = {"app": ROOT / "app.py"}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "versions" in path.parts:  # Alembic revision scripts are data, not modules
                continue
            found[module_name(path)] = path
    return found


def imported_names(path: Path, name: str) -> set[str]:
    """Every module name an ``import`` in the file refers to (``from x import y``: ``x.y`` and ``x``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: {m for m in imported_names(path, name) if m in modules and m != name}
            for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_the_cycle_finder_finds_cycles():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_lazy_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from core.store import ClinicStore\n")
    assert "core.store.ClinicStore" in imported_names(source, "core.m")
    assert "core.store" in imported_names(source, "core.m")


def test_no_import_cycles_in_core_ui_and_pages():
    graph = import_graph()
    assert len(graph) > 40  # the scan found the project
    assert find_cycles(graph) == []


def test_core_never_imports_streamlit():
    offenders = sorted(name for name, path in project_modules().items()
                       if name.startswith("core") and any(m == "streamlit" or m.startswith("streamlit.")
                                                          for m in imported_names(path, name)))
    assert offenders == []


def test_core_top_level_holds_stages_not_loose_modules():
    loose = sorted(p.name for p in (ROOT / "core").glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert len(loose) <= MAX_LOOSE_CORE_MODULES, loose
    stages = sorted(p.name for p in (ROOT / "core").iterdir() if (p / "__init__.py").exists())
    assert {"intake", "stats", "clinical", "reporting", "store", "cli"} <= set(stages)


def test_the_stages_import_only_earlier_stages():
    """intake → stats → clinical → reporting; the store and the command line sit beside them."""
    order = {"core.intake": 0, "core.stats": 1, "core.clinical": 2, "core.reporting": 3}
    for name, targets in import_graph().items():
        here = next((rank for stage, rank in order.items() if name.startswith(stage)), None)
        if here is None:
            continue
        for target in targets:
            there = next((rank for stage, rank in order.items() if target.startswith(stage)), None)
            assert there is None or there <= here, f"{name} (a stage {here}) imports {target} (a later stage)"
            assert not any(target == p or target.startswith(p + ".") for p in ("core.store", "core.cli", "ui", "pages")), \
                f"{name} imports {target}"  # whole names: core.clinical is not core.cli
