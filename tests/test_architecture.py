"""The architecture of docs/architecture.md, kept by the test command: layers without upward
imports or cycles, no module writing another's private attributes, short functions and modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from architecture import LAYERS, ROOT, cycles, group_of, import_graph, layer_violations, modules

MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 400
CODE = [ROOT / "runtime" / "msa_runtime", ROOT / "export" / "msa_export", ROOT / "benchmarks"]


def test_every_module_has_a_layer() -> None:
    for name in modules():
        group_of(name)  # raises for a module no layer names


def _added(found: list[str]) -> list[str]:
    """The violations ``found`` beyond those of the tree as it is."""
    return sorted(set(found) - set(layer_violations(import_graph())))


def test_no_import_points_up_a_layer() -> None:
    assert layer_violations(import_graph()) == []


def test_a_lower_layer_importing_a_higher_one_fails() -> None:
    """The check bites: the manifest's data model importing the face detector is reported."""
    path = ROOT / "runtime" / "msa_runtime" / "pack" / "manifest.py"
    source = path.read_text(encoding="utf-8") + "\nfrom msa_runtime.face.cascade import FaceDetector\n"
    found = _added(layer_violations(import_graph({"msa_runtime.pack.manifest": source})))
    assert len(found) == 1 and found[0].startswith("msa_runtime.pack.manifest (layer 3, msa_runtime.pack)")
    assert "imports msa_runtime.face.cascade (layer 5, msa_runtime.face)" in found[0]


def test_sideways_imports_between_groups_of_one_layer_fail() -> None:
    media = ROOT / "runtime" / "msa_runtime" / "media" / "probe.py"
    source = media.read_text(encoding="utf-8") + "\nfrom msa_runtime.engine.sessions import make_session\n"
    found = _added(layer_violations(import_graph({"msa_runtime.media.probe": source})))
    assert [f.split(" at line")[0] for f in found] == [
        "msa_runtime.media.probe (layer 4, msa_runtime.media) imports msa_runtime.engine.sessions "
        "(layer 4, msa_runtime.engine)"
    ]


def test_the_export_side_sits_above_the_whole_runtime() -> None:
    runtime = [i for i, groups in enumerate(LAYERS) if any(g.startswith("msa_runtime") for g in groups)]
    export = [i for i, groups in enumerate(LAYERS) if any(g.startswith("msa_export") for g in groups)]
    assert max(runtime) < min(export)


def test_no_import_cycles() -> None:
    assert cycles(import_graph()) == []


def test_a_cycle_is_found() -> None:
    path = ROOT / "runtime" / "msa_runtime" / "errors.py"
    source = path.read_text(encoding="utf-8") + "\nimport msa_runtime.limits\n"
    assert ["msa_runtime.errors", "msa_runtime.limits", "msa_runtime.errors"] in cycles(
        import_graph({"msa_runtime.errors": source})
    )


def _python_files() -> list[Path]:
    return [p for root in CODE for p in sorted(root.rglob("*.py"))]


def _private_writes(tree: ast.AST) -> list[tuple[int, str]]:
    """``obj._name = ...`` where ``obj`` is not ``self`` or ``cls``: reaching into another object."""
    out = []
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for t in targets:
            if (
                isinstance(t, ast.Attribute)
                and t.attr.startswith("_")
                and not t.attr.startswith("__")
                and not (isinstance(t.value, ast.Name) and t.value.id in ("self", "cls"))
            ):
                out.append((node.lineno, ast.unparse(t)))
    return out


def test_no_module_writes_another_objects_private_attributes() -> None:
    found = []
    for path in _python_files():
        for line, target in _private_writes(ast.parse(path.read_text(encoding="utf-8"))):
            found.append(f"{path.relative_to(ROOT)}:{line}: {target} = ...")
    assert found == []


def test_functions_and_modules_stay_short() -> None:
    long_ones = []
    for path in _python_files():
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(ROOT)
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long_ones.append(f"{rel}: {len(text.splitlines())} lines (max {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long_ones.append(f"{rel}:{node.lineno} {node.name}: {n} lines (max {MAX_FUNCTION_LINES})")
    assert long_ones == []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("msa_runtime.long_input", "msa_runtime.scoring.long"),
        ("msa_runtime.ray", "msa_runtime.cli.ray"),
        ("msa_export.kinds", "msa_export.presets.kinds"),
        ("msa_export.build", "msa_export.pack.build"),
    ],
)
def test_old_import_paths_still_import_with_a_warning(old: str, new: str) -> None:
    import importlib
    import sys

    import msa_export  # noqa: F401  (installs the export side's table)

    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)


def test_every_moved_path_points_at_a_module() -> None:
    import importlib.util

    from msa_runtime.moved import EXPORT_MOVES, RUNTIME_MOVES

    for old, new in {**RUNTIME_MOVES, **EXPORT_MOVES}.items():
        assert importlib.util.find_spec(new) is not None, f"{old} -> {new}: no such module"
        assert new in modules() and old not in modules(), (old, new)
