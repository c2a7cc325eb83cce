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
