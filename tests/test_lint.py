"""Habits the test command keeps (issue 14): ruff lint, ruff format and mypy stay clean.

They run inside the README's test command, so a change that breaks one fails CI like any test.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tool(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (it comes with the test extra: pip install -e '.[test]')")
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=900
    )


def test_ruff_lint_is_clean() -> None:
    run = _tool("ruff", "check", ".")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]


def test_ruff_format_is_clean() -> None:
    run = _tool("ruff", "format", "--check", ".")
    assert run.returncode == 0, "run `ruff format .`:\n" + run.stdout[-4000:] + run.stderr[-2000:]


def test_mypy_is_clean_across_both_packages() -> None:
    """The whole import graph: mypy follows every call between modules of both packages."""
    run = _tool("mypy", "-p", "msa_runtime", "-p", "msa_export")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]


def test_mypy_catches_a_wrong_call_across_modules(tmp_path: Path) -> None:
    """The export side calling the runtime with the wrong type: an error, not an ``Any``.

    (Before both packages were real folders, mypy resolved no first-party import and passed this.)
    """
    caller = tmp_path / "caller.py"
    caller.write_text(
        "from msa_runtime.pack import load_manifest\n"
        "from msa_export.convert.openvino import calibration\n"
        "load_manifest(42)\n"
        "calibration(42, None, None, None, str, print)\n"
    )
    config = ROOT / "pyproject.toml"
    run = _tool("mypy", "--config-file", str(config), "--no-incremental", str(caller))
    assert run.returncode == 1, run.stdout
    assert 'Argument 1 to "load_manifest" has incompatible type "int"' in run.stdout
    assert 'Argument 1 to "calibration" has incompatible type "int"' in run.stdout
