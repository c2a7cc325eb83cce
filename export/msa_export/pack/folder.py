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


def check_out(out: Path, force: bool) -> None:
    """Raise unless a pack may be written at ``out`` (absent, or replaceable with ``force``)."""
    if out.exists() or out.is_symlink():
        if not force:
            raise ExportError(f"{out} already exists; pass --force to replace it (a pack only)")
        _settled_replaceable(out)


def prepare_out(out: Path, force: bool) -> Path:
    """Check ``out`` and make the temporary folder the pack is built in (its sibling)."""
    check_out(out, force)
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        clean_stale(parent / out.name)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-{os.getpid()}-", dir=parent))
    except OSError as exc:
        raise ExportError(f"cannot write to {parent}: {exc.strerror}; choose a writable --out") from exc
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
    out = out.resolve().parent / out.name
    olds: list[Path] = []
    try:
        for _ in range(_SWAP_ATTEMPTS):
            try:
                os.rename(tmp, out)  # atomic; also replaces an empty folder
                return
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                    raise ExportError(f"cannot move the new pack to {out}: {exc.strerror}") from exc
            if not force:
                raise ExportError(f"{out} appeared while exporting; pass --force to replace it (a pack only)")
            if not _settled_replaceable(out):
                continue  # another export moved it aside meanwhile: try again
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-{os.getpid()}-", dir=out.parent))
            try:
                os.rename(out, old / "pack")
            except FileNotFoundError:
                pass  # another export moved it aside first: try again
            olds.append(old)
        raise ExportError(f"{out} kept changing while exporting ({_SWAP_ATTEMPTS} attempts); try again")
    finally:
        for old in olds:
            try:
                shutil.rmtree(old)
            except OSError as exc:
                warnings.warn(f"cannot remove the replaced pack {old}: {exc}", RuntimeWarning, stacklevel=2)
