"""The import graph of both packages, read from their source, and the layering they must keep.

:func:`layer_violations` is what ``tests/test_architecture.py`` checks; ``docs/architecture.md``
draws the same layers.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {"msa_runtime": ROOT / "runtime" / "msa_runtime", "msa_export": ROOT / "export" / "msa_export"}

# Lowest first. A module may import its own group and any group of a lower layer; groups of one
# layer do not import each other. The export side sits above the whole runtime.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("msa_runtime.atomic", "msa_runtime.errors"),
    ("msa_runtime.limits",),
    ("msa_runtime.checks",),
    ("msa_runtime.pack",),
    ("msa_runtime.media", "msa_runtime.engine"),
    ("msa_runtime.face", "msa_runtime.asr"),
    ("msa_runtime.preprocess",),
    ("msa_runtime.scoring", "msa_runtime.loading"),
    ("msa_runtime.boundary",),
    ("msa_runtime.analyzer",),
    ("msa_runtime.plot",),
    ("msa_runtime",),
    ("msa_runtime.live",),
    ("msa_runtime.cli", "msa_runtime.serve"),
    ("msa_export.errors",),
    ("msa_export.console",),
    ("msa_export.presets", "msa_export.data"),
    ("msa_export.models",),
    ("msa_export.gate",),
    ("msa_export.convert",),
    ("msa_export.pack",),
    ("msa_export.training",),
    ("msa_export.cli", "msa_export.tour"),
    ("msa_export",),
)


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` at ``line`` (``lazy``: inside a function or for types only)."""

    source: str
    target: str
    line: int
    lazy: bool


def module_name(path: Path) -> str:
    for pkg, folder in SOURCES.items():
        if path.is_relative_to(folder):
            parts = path.relative_to(folder).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            return ".".join((pkg, *parts))
    raise ValueError(f"{path} is in neither package")


def modules() -> dict[str, Path]:
    return {module_name(p): p for folder in SOURCES.values() for p in sorted(folder.rglob("*.py"))}


def _type_only(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:``: an arrow for layering, not an import at run time."""
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def imports_of(source: str, module: str, known: Iterable[str]) -> list[Edge]:
    """First-party imports of one module's ``source``, resolved to modules of ``known``."""
    names = set(known)
    edges: list[Edge] = []

    def resolve(name: str) -> str | None:
        while name and name not in names:
            name = name.rpartition(".")[0]
        return name or None

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) or _type_only(child)
            targets: list[str] = []
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                targets = [f"{child.module}.{a.name}" for a in child.names]
            for t in targets:
                if t.split(".")[0] in SOURCES and (found := resolve(t)) and found != module:
                    edges.append(Edge(module, found, child.lineno, inner))
            visit(child, inner)

    visit(ast.parse(source), False)
    return edges


def import_graph(overrides: Mapping[str, str] | None = None) -> list[Edge]:
    """Every first-party import of both packages; ``overrides`` replaces modules' source."""
    found = modules()
    edges: list[Edge] = []
    for name, path in found.items():
        text = (overrides or {}).get(name) or path.read_text(encoding="utf-8")
        edges += imports_of(text, name, found)
    return edges


def group_of(module: str) -> tuple[int, str]:
    """The layer index and group of a module (the longest group name that prefixes it)."""
    best: tuple[int, str] | None = None
    for index, groups in enumerate(LAYERS):
        for g in groups:
            if (module == g or module.startswith(g + ".")) and (best is None or len(g) > len(best[1])):
                best = (index, g)
    if best is None:
        raise ValueError(f"{module} belongs to no layer: add it to LAYERS")
    return best


def layer_violations(edges: Iterable[Edge]) -> list[str]:
    """One line per import that points up a layer or sideways to another group of its layer."""
    out = []
    for e in edges:
        (src_layer, src_group), (dst_layer, dst_group) = group_of(e.source), group_of(e.target)
        if dst_layer > src_layer or (dst_layer == src_layer and dst_group != src_group):
            out.append(
                f"{e.source} (layer {src_layer}, {src_group}) imports {e.target} "
                f"(layer {dst_layer}, {dst_group}) at line {e.line}"
            )
    return out


def cycles(edges: Iterable[Edge]) -> list[list[str]]:
    """Import cycles among the imports that run when a module loads, each as a path of modules."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        if not e.lazy:
            graph.setdefault(e.source, set()).add(e.target)
    found: list[list[str]] = []
    state: dict[str, int] = {}

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append(path[path.index(nxt) :] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                walk(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            walk(start, [start])
    return found
