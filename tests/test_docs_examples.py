"""Every shell and Python example in README.md and docs/ runs, on the tiny pack and generated media
(``tests/docs_examples.py`` says what the scratch folder holds). A renamed option or a moved
function fails here instead of in a reader's terminal; an example that needs what a test cannot
have (hub weights, a microphone, a GPU, minutes of CPU) is marked in the page, with the reason,
and reported as a skip."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from docs_examples import ROOT, Example, examples, make_scratch, pages, run
from media_factory import make_clip

ALL = [ex for page in pages() for ex in examples(page)]


def _media(path: Path, seconds: float) -> Path:
    return make_clip(path, duration=seconds, fps=10, size=(96, 72), sample_rate=16000, channels=1)


@pytest.fixture(scope="module")
def base(tiny_pack: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_scratch(tmp_path_factory.mktemp("docs-base"), tiny_pack, _media)


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def scratch(base: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[Path], Path]]:
    """The folder a page's examples run in: a copy of ``base`` made for its first example, so a
    page's later examples see what its earlier ones wrote."""
    root = tmp_path_factory.mktemp("docs-pages")
    folders: dict[Path, Path] = {}

    def folder(page: Path) -> Path:
        if page not in folders:
            folders[page] = root / f"page-{len(folders)}-{page.stem}"
            shutil.copytree(base, folders[page], symlinks=True)
        return folders[page]

    yield folder
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("example", ALL, ids=[ex.name for ex in ALL])
def test_example_runs(example: Example, scratch: Callable[[Path], Path], env: dict[str, str]) -> None:
    if example.skip:
        pytest.skip(f"not run: {example.skip}")
    for program in example.needs:
        if shutil.which(program) is None:
            pytest.skip(f"needs {program}, which is not installed here (.ci/run installs it with apt-get)")
    done = run(example, scratch(example.path), env)
    assert done.returncode == 0, (
        f"{example.name} ({example.lang}) exited {done.returncode}\n--- code\n{example.code}"
        f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
    )


def test_every_page_has_examples_that_run() -> None:
    """The pages a reader starts from show commands that are actually run, not only skipped."""
    for name in ("README.md", "docs/run.md", "docs/export.md", "docs/api.md", "docs/streams.md"):
        runnable = [ex for ex in ALL if ex.path == ROOT / name and not ex.skip]
        assert runnable, f"{name} has no example that the tests run"


def test_a_renamed_option_fails_the_example(base: Path, env: dict[str, str], tmp_path: Path) -> None:
    """What the example test is for: the same command with an option the CLI no longer has."""
    page = tmp_path / "page.md"
    page.write_text("```bash\nmsa-run clip.mp4 --pack packs/tiny --windw 6\n```\n", encoding="utf-8")
    (example,) = examples(page.resolve())
    done = run(example, base, env)
    assert done.returncode == 2 and "--windw" in done.stderr


def test_a_misspelt_skip_marker_is_an_error(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("<!-- example: skipped since it is slow -->\n```bash\ntrue\n```\n", encoding="utf-8")
    with pytest.raises(ValueError, match="malformed example marker"):
        examples(page)


def test_a_needs_marker_names_programs(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("<!-- example: needs espeak-ng, sox -->\n```bash\ntrue\n```\n", encoding="utf-8")
    (example,) = examples(page)
    assert example.needs == ("espeak-ng", "sox") and example.skip is None


def test_skipped_examples_say_why() -> None:
    for ex in ALL:
        assert ex.skip is None or len(ex.skip) >= 10, f"{ex.name}: say why it is not run"


def test_no_example_that_runs_installs_packages() -> None:
    """An install line would change the environment the tests run in: such blocks are marked."""
    for ex in ALL:
        if not ex.skip:
            assert "pip install" not in ex.code and "apt-get" not in ex.code, f"{ex.name} installs packages"
