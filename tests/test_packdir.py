"""Writing a pack never loses data: --force replaces packs only, leftovers of killed exports are
cleaned, and exports racing to the same --out leave one pack and nothing else."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import BinaryIO

import pytest
from click.testing import CliRunner

from msa_export.errors import ExportError
from msa_export.pack.folder import check_out, clean_stale, prepare_out, swap_into_place
from msa_runtime.pack import MANIFEST, MANIFEST_DIGEST, write_manifest


def fake_pack(folder: Path, tag: str) -> Path:
    """A folder shaped like a pack (manifest, digest, one listed file): what swapping needs."""
    folder.mkdir(parents=True, exist_ok=True)
    blob = tag.encode()
    (folder / "head.onnx").write_bytes(blob)
    files = {"head.onnx": {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}}
    write_manifest(folder, {"format": "msa-edge-pack", "format_version": 1, "name": tag, "files": files})
    return folder


def _leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


def test_force_refuses_a_folder_that_is_not_a_pack(tmp_path: Path) -> None:
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(ExportError, match="not an msa-edge pack.*nothing was changed"):
        prepare_out(mine, force=True)
    with pytest.raises(ExportError, match="already exists; pass --force"):
        prepare_out(mine, force=False)
    assert (mine / "holiday.jpg").read_bytes() == b"precious"
    assert _leftovers(tmp_path, "photos") == []


def test_force_refuses_a_pack_holding_unlisted_files(tmp_path: Path) -> None:
    pack = fake_pack(tmp_path / "pk", "a")
    (pack / "notes").mkdir()
    (pack / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(ExportError, match="does not list.*notes/todo.txt"):
        check_out(pack, force=True)
    assert (pack / "notes" / "todo.txt").read_text() == "mine"


def test_force_refuses_a_symlink_and_a_file(tmp_path: Path) -> None:
    target = fake_pack(tmp_path / "real", "a")
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(ExportError, match="symbolic link"):
        check_out(link, force=True)
    file = tmp_path / "f"
    file.write_text("x")
    with pytest.raises(ExportError, match="not a folder"):
        check_out(file, force=True)


def test_force_replaces_a_pack_and_an_empty_folder(tmp_path: Path) -> None:
    out = fake_pack(tmp_path / "pk", "old")
    tmp = prepare_out(out, force=True)
    fake_pack(tmp, "new")
    swap_into_place(tmp, out, force=True)
    assert (out / "head.onnx").read_bytes() == b"new"
    empty = tmp_path / "empty"
    empty.mkdir()
    tmp = prepare_out(empty, force=True)
    swap_into_place(fake_pack(tmp, "e"), empty, force=True)
    assert (empty / MANIFEST).is_file() and (empty / MANIFEST_DIGEST).is_file()
    assert _leftovers(tmp_path, "pk") == [] and _leftovers(tmp_path, "empty") == []


def test_cli_force_on_a_user_folder_is_a_one_line_error(tmp_path: Path) -> None:
    from msa_export.cli import main

    mine = tmp_path / "docs"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    result = CliRunner().invoke(main, ["--preset", "tiny", "--out", str(mine), "--force"])
    assert result.exit_code == 2, result.output
    assert "not an msa-edge pack" in result.output and "Traceback" not in result.output
    assert (mine / "thesis.tex").read_text() == "years of work"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_partials_of_dead_exports_are_cleaned(tmp_path: Path) -> None:
    dead = _dead_pid()
    stale = [
        tmp_path / f".pk.partial-{dead}",
        tmp_path / f".pk.partial-{dead}-x1y2",
        tmp_path / f".pk.old-{dead}-ab",
    ]
    live = tmp_path / f".pk.partial-{os.getpid()}-zz"
    other = tmp_path / f".pkx.partial-{dead}"  # another --out's leftovers: not ours to judge
    for folder in [*stale, live, other]:
        folder.mkdir()
        (folder / "text.int8.onnx").write_bytes(b"half")
    tmp = prepare_out(tmp_path / "pk", force=False)
    assert not any(p.exists() for p in stale)
    assert live.exists() and other.exists() and tmp.exists()
    assert clean_stale(tmp_path / "pk") == []  # the live ones stay


RACER = """
import sys, hashlib
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_packdir import fake_pack
from msa_export.pack.folder import prepare_out, swap_into_place
out = Path({out!r})
for i in range({rounds}):
    tmp = prepare_out(out, force=True)
    fake_pack(tmp, f"{{sys.argv[1]}}-{{i}}")
    swap_into_place(tmp, out, force=True)
"""


def _assert_one_clean_pack(out: Path) -> None:
    assert _leftovers(out.parent, out.name) == []
    blob = (out / MANIFEST).read_bytes()
    assert (out / MANIFEST_DIGEST).read_text().split()[0] == hashlib.sha256(blob).hexdigest()
    assert sorted(p.name for p in out.iterdir()) == ["head.onnx", MANIFEST, MANIFEST_DIGEST]


def test_two_processes_racing_to_one_out(tmp_path: Path) -> None:
    out = tmp_path / "pk"
    code = RACER.format(tests=str(Path(__file__).parent), out=str(out), rounds=25)
    procs = [
        subprocess.Popen([sys.executable, "-c", code, tag], stderr=subprocess.PIPE, text=True) for tag in "ab"
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    _assert_one_clean_pack(out)


def test_threads_racing_to_one_out(tmp_path: Path) -> None:
    out = tmp_path / "pk"
    errors: list[BaseException] = []

    def racer(tag: str) -> None:
        try:
            for i in range(25):
                tmp = prepare_out(out, force=True)
                fake_pack(tmp, f"{tag}-{i}")
                swap_into_place(tmp, out, force=True)
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=racer, args=(t,)) for t in "abc"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    _assert_one_clean_pack(out)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    from msa_runtime.atomic import atomic_write, atomic_write_text

    target = tmp_path / "record.json"
    atomic_write_text(target, "old")

    def half(fh: BinaryIO) -> None:
        fh.write(b"half of the new")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["record.json"]
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
