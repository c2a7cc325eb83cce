"""Where a pack is written: the ``--out`` folder, its temporary sibling, and the swap into place.

A pack is built in a temporary sibling folder ``.NAME.partial-PID-XXXX`` and renamed to ``NAME``
when every file passed validation. The rules that keep a user's files safe:

- ``--force`` replaces only a folder that is an msa-edge pack (its ``manifest.json`` says
  ``"format": "msa-edge-pack"``) and holds nothing but the files its manifest lists (plus
  ``manifest.json`` and ``manifest.sha256``), or an empty folder. Anything else is refused with
  an :class:`~msa_export.errors.ExportError` and left untouched.
- Leftovers of exports that were killed (``.NAME.partial-PID...`` and ``.NAME.old-PID...``
  folders whose process no longer runs) are removed at the next export to the same ``--out``.
- Two exports racing to the same ``--out`` with ``--force``: each renames its finished folder into
  place, moving a pack that is there aside first and deleting it; the last one to finish wins,
  neither raises and no ``.old`` folder stays behind. Without ``--force`` the later one fails
  with a message and writes nothing.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
import time
import warnings
from pathlib import Path

from msa_export.console import uninterrupted
from msa_export.errors import ExportError
from msa_runtime.pack import FORMAT, MANIFEST, MANIFEST_DIGEST

_SWAP_ATTEMPTS = 20
_CHECK_ATTEMPTS = 5


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def _leftover(out: Path) -> re.Pattern[str]:
    return re.compile(rf"^\.{re.escape(out.name)}\.(partial|old)-(\d+)(-.*)?$")


def clean_stale(out: Path) -> list[Path]:
    """Remove the temporary folders of dead exports to ``out``; the folders removed."""
    parent = out.parent
    pattern = _leftover(out)
    removed: list[Path] = []
    try:
        siblings = list(parent.iterdir())
    except OSError:
        return removed
    for path in siblings:
        match = pattern.match(path.name)
        if match is None or path.is_symlink() or not path.is_dir() or _pid_alive(int(match.group(2))):
            continue
        try:
            shutil.rmtree(path)
        except OSError as exc:
            warnings.warn(
                f"cannot remove the stale export folder {path}: {exc}", RuntimeWarning, stacklevel=2
            )
            continue
        removed.append(path)
    return removed


def is_pack(folder: Path) -> bool:
    """Whether ``folder`` holds an msa-edge pack manifest (only its ``format`` key is read)."""
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT


def _unlisted(folder: Path) -> list[str]:
    """Files under ``folder`` that its manifest does not list (what replacing it would lose)."""
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        files = data.get("files") if isinstance(data, dict) else None
        listed = set(files) if isinstance(files, dict) else set()
        listed |= {MANIFEST, MANIFEST_DIGEST}
        found = sorted(folder.rglob("*"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return [f"{MANIFEST} (unreadable)"]
    out = []
    for path in found:
        if path.is_dir() and not path.is_symlink():
            continue
        rel = path.relative_to(folder).as_posix()
        if rel not in listed:
            out.append(rel)
    return out


def check_replaceable(out: Path) -> None:
    """Raise unless ``out`` may be replaced by ``--force``: an msa-edge pack with nothing of the
    user's inside, or an empty folder."""
    if out.is_symlink():
        raise ExportError(f"{out} is a symbolic link; give the real folder as --out (nothing was changed)")
    if not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder; choose another --out")
    try:
        if not any(out.iterdir()):
            return
    except OSError as exc:
        raise ExportError(f"cannot read {out}: {exc.strerror}; choose another --out") from exc
    if not is_pack(out):
        raise ExportError(
            f"{out} is not an msa-edge pack (no pack manifest.json): --force only replaces a pack; "
            "choose another --out or move its files away (nothing was changed)"
        )
    extra = _unlisted(out)
    if extra:
        shown = ", ".join(extra[:5]) + (f", ... ({len(extra) - 5} more)" if len(extra) > 5 else "")
        raise ExportError(
            f"pack {out} holds files its manifest does not list ({shown}): --force would delete "
            "them; move them away or choose another --out (nothing was changed)"
        )


def target(out: Path) -> Path:
    """Where ``out`` is on disk, as an absolute path whose last part names it: ``.`` and ``..``
    have no name of their own, and the temporary sibling and the swap need one. Messages keep
    ``out`` as the user typed it."""
    absolute = Path(os.path.abspath(out))
    if not absolute.name:
        raise ExportError(f"--out {out} is the root folder: give a folder for the pack")
    return absolute.parent.resolve() / absolute.name


def _enclosing_pack(place: Path) -> Path | None:
    """The pack folder that ``place`` lies inside, if any (a pack within a pack would be one of
    its unlisted files)."""
    for parent in place.parents:
        if is_pack(parent):
            return parent
    return None


def check_out(out: Path, force: bool) -> None:
    """Raise unless a pack may be written at ``out`` (absent, or replaceable with ``force``, and
    not inside another pack)."""
    place = target(out)
    outer = _enclosing_pack(place)
    if outer is not None:
        raise ExportError(
            f"--out {out} lies inside the pack {outer}: choose a folder outside it (nothing was changed)"
        )
    if out.exists() or out.is_symlink():
        if not force:
            raise ExportError(f"{out} already exists; pass --force to replace it (a pack only)")
        _settled_replaceable(out)


def prepare_out(out: Path, force: bool) -> Path:
    """Check ``out`` and make the temporary folder the pack is built in (its sibling)."""
    check_out(out, force)
    place = target(out)
    parent = place.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        clean_stale(place)
        tmp = Path(tempfile.mkdtemp(prefix=f".{place.name}.partial-{os.getpid()}-", dir=parent))
    except OSError as exc:
        raise ExportError(
            f"cannot write beside {out} (in {parent}): {exc.strerror}; choose a writable --out"
        ) from exc
    return tmp


def _settled_replaceable(out: Path) -> bool:
    """:func:`check_replaceable` on a folder other exports may be swapping at the same moment:
    a check that fails while ``out`` changes under it is repeated (a user's folder fails every
    time and raises); False when ``out`` is gone."""
    for attempt in range(_CHECK_ATTEMPTS):
        if not os.path.lexists(out):
            return False
        try:
            check_replaceable(out)
            return True
        except ExportError:
            if attempt == _CHECK_ATTEMPTS - 1:
                if not os.path.lexists(out):
                    return False
                raise
            time.sleep(0.01 * (attempt + 1))
    return False


def swap_into_place(tmp: Path, out: Path, force: bool) -> None:
    """Rename the finished folder ``tmp`` to ``out``. With ``force`` a pack already there (also
    one another export put there meanwhile) is moved aside and deleted; anything else there is
    refused (:func:`check_replaceable`)."""
    place = target(out)
    if _holds_cwd(place):
        _swap_contents(tmp, place, out, force)
        return
    olds: list[Path] = []
    try:
        for _ in range(_SWAP_ATTEMPTS):
            try:
                with uninterrupted():
                    os.rename(tmp, place)  # atomic; also replaces an empty folder
                return
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                    raise ExportError(f"cannot move the new pack to {out}: {exc.strerror}") from exc
            if not force:
                raise ExportError(f"{out} appeared while exporting; pass --force to replace it (a pack only)")
            if not _settled_replaceable(out):
                continue  # another export moved it aside meanwhile: try again
            old = Path(tempfile.mkdtemp(prefix=f".{place.name}.old-{os.getpid()}-", dir=place.parent))
            olds.append(old)
            with uninterrupted():  # SIGTERM between moving the old pack aside and renaming: no pack
                try:
                    os.rename(place, old / "pack")
                except FileNotFoundError:
                    continue  # another export moved it aside first: try again
                try:
                    os.rename(tmp, place)
                    return
                except OSError as exc:
                    if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                        raise ExportError(f"cannot move the new pack to {out}: {exc.strerror}") from exc
        raise ExportError(f"{out} kept changing while exporting ({_SWAP_ATTEMPTS} attempts); try again")
    finally:
        for old in olds:
            try:
                shutil.rmtree(old)
            except OSError as exc:
                warnings.warn(f"cannot remove the replaced pack {old}: {exc}", RuntimeWarning, stacklevel=2)


def _holds_cwd(place: Path) -> bool:
    """Whether ``place`` is (or holds) the current folder: ``--out .`` run inside the folder."""
    try:
        cwd = Path.cwd()
    except OSError:
        return False  # the current folder is gone: nothing to keep it for
    return cwd == place or place in cwd.parents


def _entries(folder: Path) -> list[Path]:
    """``folder``'s entries, the manifest and its digest last: a folder only looks like a pack once
    its files are there, and stops looking like one before they go."""
    last = {MANIFEST: 1, MANIFEST_DIGEST: 2}
    return sorted(folder.iterdir(), key=lambda p: (last.get(p.name, 0), p.name))


def _swap_contents(tmp: Path, place: Path, out: Path, force: bool) -> None:
    """Move the new pack's files from ``tmp`` into ``place``, the current folder, keeping the folder
    itself: renaming it away would leave the shell that ran the export in a deleted folder. With
    ``force`` the old pack's files are moved aside first (and deleted once the new ones are in)."""
    with uninterrupted():
        if any(place.iterdir()):
            if not force:
                raise ExportError(f"{out} is not empty; pass --force to replace it (a pack only)")
            check_replaceable(out)
        old = Path(tempfile.mkdtemp(prefix=f".{place.name}.old-{os.getpid()}-", dir=place.parent))
        try:
            for entry in reversed(_entries(place)):
                os.rename(entry, old / entry.name)
            for entry in _entries(tmp):
                os.rename(entry, place / entry.name)
        except OSError as exc:
            raise ExportError(
                f"cannot move the new pack into {out}: {exc.strerror}; the old pack's files are in {old}"
            ) from exc
    for leftover in (tmp, old):  # tmp is empty now; old holds the replaced pack, nothing of the user's
        try:
            shutil.rmtree(leftover)
        except OSError as exc:
            warnings.warn(f"cannot remove {leftover}: {exc}", RuntimeWarning, stacklevel=2)
