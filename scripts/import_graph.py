"""The import graph of pipeline/ and stages/, read from the source (no module is imported).

Every import counts, at module level or inside a function (a lazy import is still a dependency:
it runs when the function does), except those under `if TYPE_CHECKING:`, which never run.
`from pkg import name` is an edge to the module pkg.name when that is a module, else to pkg.
"""

from __future__ import annotations

import ast
from pathlib import Path

# The floors, lowest first: a package may import from its own floor and the ones below it. The
# stages run in the order sweep -> evaluation -> report, so none imports a later one.
FLOORS = ("errors", "params", "infra", "data", "model", "train", "sweep", "evaluation", "report", "cli")
STAGE_FLOOR = {"prepare": "data", "sweep": "sweep", "evaluate": "evaluation", "report": "report"}


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)
    visit(tree)
    return found


def graph(root: Path) -> tuple[dict[str, set[str]], dict[str, Path]]:
    """(module -> the project modules it imports, module -> its file) for pipeline/ and stages/."""
    files = {module_name(root, p): p for d in ("pipeline", "stages")
             for p in sorted((root / d).rglob("*.py"))}
    edges: dict[str, set[str]] = {}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        out: set[str] = set()
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    up = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            for t in targets:
                while t and t not in files and "." in t:  # pipeline.x.y.func -> pipeline.x.y
                    t = t.rpartition(".")[0]
                if t in files and t != mod:
                    out.add(t)
        edges[mod] = out
    return edges, files


def floor(mod: str) -> int | None:
    """The floor of a module of pipeline/ (None: the package root)."""
    parts = mod.split(".")
    if parts[0] != "pipeline" or len(parts) < 2:
        return None
    return FLOORS.index(parts[1]) if parts[1] in FLOORS else None


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return out


def closure(edges: dict[str, set[str]], start: str) -> set[str]:
    """Every module `start` may run, itself included (with the packages whose __init__ runs)."""
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        parts = m.split(".")
        parents = {".".join(parts[:i]) for i in range(1, len(parts))}
        todo.extend((edges.get(m, set()) | {p for p in parents if p in edges}) - seen)
    return seen
