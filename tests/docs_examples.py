"""The shell and Python examples of README.md and docs/*.md, read as the reader sees them.

Every fenced ``bash`` or ``python`` block is an example that ``tests/test_docs_examples.py`` runs
in a scratch folder (see :func:`make_scratch`). A block that cannot run there carries the line
``<!-- example: skip because REASON -->`` directly above its fence, and one that needs a program
the machine may lack, ``<!-- example: needs PROGRAM -->`` (skipped, saying so, where it is
missing); ``text``, ``toml`` and other
fences (program output, file contents) are not run.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN_LANGS = {"bash": "bash", "sh": "bash", "shell": "bash", "python": "python", "py": "python"}
_FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w+-]*)\s*$")
_SKIP = re.compile(r"^\s*<!--\s*example:\s*skip because (?P<reason>.+?)\s*-->\s*$")
_NEEDS = re.compile(r"^\s*<!--\s*example:\s*needs (?P<programs>[\w.+-]+(?:,\s*[\w.+-]+)*)\s*-->\s*$")
_MARKER = re.compile(r"<!--\s*example:")


@dataclass(frozen=True)
class Example:
    """One fenced block: where it is, its language (``bash``/``python``), its code and, for a
    block that is not run, why."""

    path: Path
    line: int
    lang: str
    code: str
    skip: str | None
    needs: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        shown = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{shown}:{self.line}"


def pages() -> list[Path]:
    """README.md and every Markdown page of the docs site (the benchmark results it links to are
    results, not examples)."""
    docs = ROOT / "docs"
    found = [p for p in sorted(docs.rglob("*.md")) if not p.is_relative_to(docs / "results")]
    return [ROOT / "README.md", *found]


def examples(path: Path) -> list[Example]:
    """The runnable blocks of one page, in order. A misspelt skip marker is an error, so a typo
    cannot quietly turn an example off."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Example] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if not fence:
            if _MARKER.search(lines[i]) and not (_SKIP.match(lines[i]) or _NEEDS.match(lines[i])):
                raise ValueError(
                    f"{path}:{i + 1}: malformed example marker (want '<!-- example: skip because REASON -->')"
                )
            i += 1
            continue
        indent, lang = fence["indent"], fence["lang"]
        end = i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        code = "\n".join(
            line[len(indent) :] if line.startswith(indent) else line for line in lines[i + 1 : end]
        )
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        skip, needs = _SKIP.match(before), _NEEDS.match(before)
        programs = tuple(p.strip() for p in needs["programs"].split(",")) if needs else ()
        if lang in RUN_LANGS:
            reason = skip["reason"] if skip else None
            found.append(Example(path, i + 1, RUN_LANGS[lang], code + "\n", reason, programs))
        i = end + 1
    return found


def run(
    example: Example, cwd: Path, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run one example in ``cwd``: bash with ``-euo pipefail`` (a failing command fails the block),
    Python in a fresh interpreter."""
    if example.lang == "bash":
        argv = ["bash", "-euo", "pipefail", "-c", example.code]
    else:
        script = cwd / "_example.py"
        script.write_text(example.code, encoding="utf-8")
        argv = [sys.executable, str(script)]
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def make_scratch(folder: Path, tiny_pack: Path, make_media: Callable[[Path, float], Path]) -> Path:
    """The folder the examples run in: ``packs/tiny`` (the tiny pack), ``clip.mp4`` (5 s) with a
    ``clip.srt`` sidecar, ``talk.mp4`` (60 s) and ``talk.srt``, ``clips/`` (three 2 s clips),
    ``label.csv`` (a MOSI-style text dataset of 40 utterances) and ``sentences.txt``."""
    (folder / "packs").mkdir(parents=True)
    shutil.copytree(tiny_pack, folder / "packs" / "tiny")
    make_media(folder / "clip.mp4", 5.0)
    _srt(folder / "clip.srt", [(0.0, 5.0, "i loved this movie")])
    make_media(folder / "talk.mp4", 60.0)
    words = ["what a great start", "this part is dull", "the acting is wonderful", "a sad ending"]
    _srt(folder / "talk.srt", [(t, t + 5.0, words[int(t // 15)]) for t in range(0, 60, 5)])
    (folder / "clips").mkdir()
    for i in range(3):
        make_media(folder / "clips" / f"c{i}.mp4", 2.0)
    rows = ["id,text,label,mode"]
    for i in range(40):
        good = i % 2 == 0
        text = "i loved it and it was wonderful" if good else "boring and a waste of time"
        mode = "train" if i < 24 else "valid" if i < 32 else "test"
        rows.append(f"v{i // 4}_{i},{text} {i},{2.0 if good else -2.0},{mode}")
    (folder / "label.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (folder / "sentences.txt").write_text("i loved it\nwhat a waste of time\n", encoding="utf-8")
    return folder


def _srt(path: Path, cues: list[tuple[float, float, str]]) -> None:
    def stamp(t: float) -> str:
        return (
            f"{int(t // 3600):02d}:{int(t % 3600 // 60):02d}:{int(t % 60):02d},{int(round(t % 1 * 1000)):03d}"
        )

    blocks = [f"{i}\n{stamp(a)} --> {stamp(b)}\n{text}\n" for i, (a, b, text) in enumerate(cues, 1)]
    path.write_text("\n".join(blocks), encoding="utf-8")
