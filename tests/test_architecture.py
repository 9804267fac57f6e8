"""Static checks of the package's structure, read from the source with ``ast`` (no evapp module is imported).

They guard the layering: no import cycles (a cycle makes import order matter and hides partial-init bugs), nothing
but ``evapp.__main__`` depends on the CLI (the CLI is the top floor), and no module grows past 450 lines.
Run ``python tests/test_architecture.py [PACKAGE_DIR]`` to print the largest files and the import graph's floors.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "evapp"
MAX_LINES = 450
CLI = "evapp.cli"
MAY_IMPORT_CLI = {"evapp.__main__"}
MAX_CYCLES_PER_COMPONENT = 25


@dataclass(frozen=True)
class Site:
    """Where an import statement is: the file (relative to the package's parent) and line."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


Graph = dict[str, dict[str, list[Site]]]  # importer -> imported -> the import statements


# --- the graph builder ---------------------------------------------------------------------------------------------


def discover_modules(root: Path) -> dict[str, Path]:
    """Every module under ``root`` by dotted name; a package's ``__init__.py`` is the package module itself."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        if "__pycache__" in rel.parts:
            continue
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    """``if TYPE_CHECKING:`` or ``if typing.TYPE_CHECKING:``: its body never runs, so its imports are no edges."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """All import statements at any depth (functions, methods, try blocks), except under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)  # the ``else:`` of a TYPE_CHECKING block does run
            continue
        stack.extend(ast.iter_child_nodes(node))
    return sorted(found, key=lambda n: n.lineno)


def _ancestors(module: str) -> list[str]:
    """``a.b.c`` -> ``[a, a.b]``: the packages whose ``__init__`` runs before the module does."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _deepest_known(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of a dotted name that is one of our modules (``evapp.x.missing`` -> ``evapp.x``)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        candidate = ".".join(parts[:i])
        if candidate in modules:
            return candidate
    return None


def _targets(importer: str, node: ast.Import | ast.ImportFrom, modules: dict[str, Path]) -> set[str]:
    """The package modules that one import statement runs, as edges from ``importer``.

    The named module is always an edge, and so are its parent packages, except those that are also the
    importer's own parents: they ran before the importer did, so they are no dependency it adds.
    """
    is_package = modules[importer].name == "__init__.py"
    explicit: set[str] = set()
    if isinstance(node, ast.Import):
        for alias in node.names:
            known = _deepest_known(alias.name, modules)
            if known:
                explicit.add(known)
    else:
        if node.level:
            base_parts = importer.split(".") if is_package else importer.split(".")[:-1]
            if node.level - 1 > len(base_parts) - 1:
                return set()  # beyond the top-level package: not ours to resolve
            base_parts = base_parts[: len(base_parts) - (node.level - 1)]
            base = ".".join(base_parts + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        known = _deepest_known(base, modules)
        if known is None:
            return set()
        if known != base:
            explicit.add(known)  # ``from evapp.x.missing import y``: the deepest module that exists
        else:
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                explicit.add(sub if sub in modules else base)
    own_parents = set(_ancestors(importer))
    implied = {p for t in explicit for p in _ancestors(t) if p in modules} - own_parents
    return (explicit | implied) - {importer}


def build_graph(root: Path) -> Graph:
    """The import graph of every module under ``root``, with the file:line of every import behind each edge."""
    modules = discover_modules(root)
    graph: Graph = {name: {} for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        shown = path.relative_to(root.parent).as_posix()
        for node in _runtime_imports(tree):
            for target in sorted(_targets(name, node, modules)):
                graph[name].setdefault(target, []).append(Site(shown, node.lineno))
    return graph


def strongly_connected(graph: Graph) -> list[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit); each component sorted, components in reverse topological
    order (a component comes after everything it imports)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def cycles_in(component: list[str], graph: Graph, limit: int = MAX_CYCLES_PER_COMPONENT) -> list[list[str]]:
    """The elementary cycles inside one component, each starting at its smallest module (at most ``limit``)."""
    members = set(component)
    found: list[list[str]] = []
    for start in component:
        allowed = {m for m in members if m >= start}
        path = [start]
        work = [iter(sorted(t for t in graph[start] if t in allowed))]
        while work and len(found) < limit:
            nxt = next(work[-1], None)
            if nxt is None:
                work.pop()
                path.pop()
            elif nxt == start:
                found.append([*path, start])
            elif nxt not in path:
                path.append(nxt)
                work.append(iter(sorted(t for t in graph[nxt] if t in allowed)))
    return found


def find_cycles(graph: Graph) -> list[list[str]]:
    """Every import cycle, grouped by strongly connected component (a component of one module has none, as
    self-imports are dropped when building the graph)."""
    cycles = []
    for component in strongly_connected(graph):
        if len(component) > 1:
            cycles.extend(cycles_in(component, graph))
    return cycles


def describe_cycle(cycle: list[str], graph: Graph) -> str:
    """``a -> b -> a`` and, under it, the import statements behind each edge: the places to cut."""
    lines = ["  " + " -> ".join(cycle)]
    for src, dst in zip(cycle[:-1], cycle[1:], strict=True):
        sites = ", ".join(str(s) for s in graph[src][dst])
        lines.append(f"      {src} -> {dst}   at {sites}")
    return "\n".join(lines)


def describe_cycles(graph: Graph) -> str:
    """Every cycle, grouped by component, with the edges that lie on all of a component's cycles (cut one of
    those and the whole component is acyclic)."""
    blocks = []
    for component in strongly_connected(graph):
        if len(component) < 2:
            continue
        cycles = cycles_in(component, graph)
        blocks.append(f"component {{{', '.join(component)}}}: {len(cycles)} cycle(s)")
        blocks += [describe_cycle(c, graph) for c in cycles]
        common = set.intersection(*({*zip(c[:-1], c[1:], strict=True)} for c in cycles))
        if common and len(cycles) < MAX_CYCLES_PER_COMPONENT:
            blocks.append("  on every cycle above (cutting one breaks them all):")
            blocks += [f"      {a} -> {b}   at {', '.join(map(str, graph[a][b]))}" for a, b in sorted(common)]
    return "\n".join(blocks)


def line_counts(root: Path) -> dict[str, int]:
    """Lines of every .py file under ``root``, keyed by its path relative to the package's parent."""
    return {
        path.relative_to(root.parent).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in discover_modules(root).values()
    }


def floors(graph: Graph) -> list[list[str]]:
    """The layering: floor 0 imports nothing of ours, floor n imports only from lower floors (a cycle is one
    ``{a, b}`` group, sharing a floor)."""
    components = strongly_connected(graph)  # dependencies come first
    where = {m: i for i, comp in enumerate(components) for m in comp}
    level: dict[int, int] = {}
    for i, comp in enumerate(components):
        below = {where[t] for m in comp for t in graph[m]} - {i}
        level[i] = 1 + max((level[j] for j in below), default=-1)
    result: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for i, comp in enumerate(components):
        result[level[i]].append(comp[0] if len(comp) == 1 else "{" + ", ".join(comp) + "}")
    return [sorted(f) for f in result]


def report(root: Path) -> str:
    """What a human wants before refactoring: the five largest files and the graph's floors."""
    graph = build_graph(root)
    counts = sorted(line_counts(root).items(), key=lambda kv: (-kv[1], kv[0]))
    out = ["The five largest files:"]
    out += [f"  {lines:5d}  {name}" for name, lines in counts[:5]]
    out.append("Floors of the import graph (each imports only from floors below; {..} is a cycle):")
    for n, members in enumerate(floors(graph)):
        out.append(f"  floor {n}: " + ", ".join(members))
    if find_cycles(graph):
        out.append("Cycles:")
        out.append(describe_cycles(graph))
    return "\n".join(out)


# --- the checks ------------------------------------------------------------------------------------------------------


def test_no_import_cycle():
    """A cycle makes the result depend on which module is imported first; list each with the imports to cut."""
    graph = build_graph(PACKAGE)
    cycles = find_cycles(graph)
    if cycles:
        pytest.fail(
            f"{len(cycles)} import cycle(s) among evapp modules; cut one edge of each:\n" + describe_cycles(graph),
            pytrace=False,
        )


def _is_cli(module: str) -> bool:
    return module == CLI or module.startswith(CLI + ".")


def test_nothing_imports_the_cli():
    """The CLI sits on top: library code that imports it drags click in and cannot be used on its own."""
    graph = build_graph(PACKAGE)
    offenders = [
        f"  {src} imports {dst} at {site}"
        for src, targets in sorted(graph.items())
        if not _is_cli(src) and src not in MAY_IMPORT_CLI
        for dst, sites in sorted(targets.items())
        if _is_cli(dst)
        for site in sites
    ]
    if offenders:
        message = "modules outside the CLI import it (only evapp.__main__ may):\n" + "\n".join(offenders)
        pytest.fail(message, pytrace=False)


def test_no_module_over_450_lines():
    """Long modules hide several responsibilities; past 450 lines, split by what the code is for."""
    over = {name: n for name, n in line_counts(PACKAGE).items() if n > MAX_LINES}
    if over:
        pytest.fail(
            f"modules over {MAX_LINES} lines:\n"
            + "\n".join(f"  {name}: {n} lines" for name, n in sorted(over.items(), key=lambda kv: -kv[1])),
            pytrace=False,
        )


def test_cycle_finder_on_synthetic_package(tmp_path):
    """The builder sees imports inside functions and relative ones, ignores TYPE_CHECKING, and finds the cycle."""
    pkg = tmp_path / "synth"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    import synth.b\n    return synth.b\n")
    (pkg / "b.py").write_text("from . import a\n")
    (pkg / "c.py").write_text(
        "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from synth import a\n    from .b import x\n"
    )

    graph = build_graph(pkg)

    assert graph["synth.a"] == {"synth.b": [Site("synth/a.py", 2)]}
    assert graph["synth.b"] == {"synth.a": [Site("synth/b.py", 1)]}
    assert graph["synth.c"] == {}
    assert graph["synth"] == {}
    assert find_cycles(graph) == [["synth.a", "synth.b", "synth.a"]]
    assert describe_cycle(["synth.a", "synth.b", "synth.a"], graph).splitlines() == [
        "  synth.a -> synth.b -> synth.a",
        "      synth.a -> synth.b   at synth/a.py:2",
        "      synth.b -> synth.a   at synth/b.py:1",
    ]


if __name__ == "__main__":
    print(report(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else PACKAGE))
