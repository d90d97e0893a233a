"""The import graph of ``synthloop`` has no cycle and no arrow from a lower layer to a higher one.

Every ``synthloop/**/*.py`` is read with :mod:`ast` (module-level and function-level imports, and
``TYPE_CHECKING`` blocks alike) and turned into a graph of package-internal module imports. The
layers (docs/DESIGN.md, highest first)::

    cli, commands, api                 (top: nothing else imports them; ``synthloop/__init__``
                                        exposes api lazily, and ``import synthloop`` for
                                        ``__version__`` is not counted as an arrow to it)
    ui                                 (nothing imports it)
    experiments, active, gap, fitting
    deploy
    training
    evaluation
    farm, generators, importers, exporters
    dataset, geometry, scenes          (+ the root modules errors, atomic, progress, validation,
                                        prototext, jsonio, overlays, figures)

An import must point to the same or a lower layer. Beyond the ranking: exporters never import
importers, and evaluation imports no format module (importers, exporters).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "synthloop"

# package (first part below synthloop) -> layer rank; root modules rank 0 unless listed
RANK = {
    "geometry": 0,
    "scenes": 0,
    "dataset": 0,
    "errors": 0,
    "atomic": 0,
    "progress": 0,
    "validation": 0,
    "prototext": 0,
    "jsonio": 0,
    "overlays": 0,
    "figures": 0,
    "userfiles": 0,
    "bodies": 0,
    "importers": 1,
    "exporters": 1,
    "generators": 1,
    "farm": 1,
    "evaluation": 2,
    "training": 3,
    "deploy": 4,
    "experiments": 5,
    "active": 5,
    "gap": 5,
    "fitting": 5,
    "visualize": 1,
    "ui": 6,
    "cli_common": 7,
    "commands": 7,
    "cli": 7,
    "api": 7,
    "synthloop": 7,
}
FORBIDDEN = {  # (importer package, imported package) pairs the ranking alone would allow
    ("exporters", "importers"),
}
FORMAT_PACKAGES = {"importers", "exporters"}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every ``synthloop...`` module ``path`` imports, anywhere in the file (relative ones resolved)."""
    mod = module_name(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.add(target)
            # ``from synthloop.x import y`` may name the submodule synthloop.x.y
            out.update(f"{target}.{a.name}" for a in node.names)
    return {m for m in out if m == "synthloop" or m.startswith("synthloop.")}


def build_graph() -> dict[str, set[str]]:
    files = sorted(ROOT.rglob("*.py"))
    modules = {module_name(p) for p in files}
    graph: dict[str, set[str]] = {}
    for p in files:
        src = module_name(p)
        # ``import synthloop`` (for ``__version__``) is no arrow to the package's lazy facade
        graph[src] = {m for m in imports_of(p) if m in modules and m not in (src, "synthloop")}
    return graph


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "synthloop"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for src, targets in sorted(graph.items()):
        a = layer_of(src)
        for dst in sorted(targets):
            b = layer_of(dst)
            if a == b or b == "synthloop":
                continue
            if a not in RANK or b not in RANK:
                bad.append(f"{src} -> {dst}: package without a layer (add it to RANK)")
            elif RANK[b] > RANK[a]:
                bad.append(f"{src} -> {dst}: {a} (layer {RANK[a]}) imports {b} (layer {RANK[b]})")
            elif (a, b) in FORBIDDEN:
                bad.append(f"{src} -> {dst}: {a} never imports {b}")
            elif a == "evaluation" and b in FORMAT_PACKAGES:
                bad.append(f"{src} -> {dst}: evaluation imports no format module")
    return bad


def test_the_reader_sees_function_level_and_relative_imports(tmp_path):
    """The checks below are only as good as the import reader: it must see lazy imports."""
    graph = build_graph()
    assert (
        "synthloop.training.loop" in graph and "synthloop.training.spec" in graph["synthloop.training.loop"]
    )
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert layer_violations({"synthloop.geometry.x": {"synthloop.training.y"}})
    assert layer_violations({"synthloop.exporters.x": {"synthloop.importers.y"}})
    assert layer_violations({"synthloop.evaluation.x": {"synthloop.exporters.y"}})
    assert not layer_violations({"synthloop.deploy.x": {"synthloop.training.y"}})
    f = ROOT / "training" / "__init__.py"
    assert module_name(f) == "synthloop.training"


def test_no_import_cycle():
    cycle = find_cycle(build_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_imports_point_down_the_layers():
    bad = layer_violations(build_graph())
    assert not bad, "\n".join(bad)
