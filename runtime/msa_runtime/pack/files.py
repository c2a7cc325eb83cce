"""Pack folders on disk: the manifest read and written atomically with its digest, every file's
sha256, and names kept inside the folder."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from msa_runtime.atomic import atomic_write_bytes
from msa_runtime.errors import PackError
from msa_runtime.limits import (
    MAX_CONFIG_BYTES,
    MAX_MANIFEST_BYTES,
    MAX_PACK_FILE_BYTES,
    check_regular,
    read_bounded,
    size_text,
)
from msa_runtime.pack.manifest import MANIFEST, MANIFEST_DIGEST, FileRecord, Manifest
from msa_runtime.pack.parse import asr_folder, parse_manifest

__all__ = [
    "MAX_MANIFEST_BYTES",
    "load_manifest",
    "pack_digest",
    "sha256_file",
    "verify_files",
    "write_manifest",
]

_REBUILD = "rebuild or re-copy the pack"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _inside(root: Path, name: str) -> Path:
    try:
        path = (root / name).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, an unusable name
        raise PackError(f"pack {root}: file {name!r} cannot be resolved ({exc}); rebuild the pack") from exc
    if not path.is_relative_to(root.resolve()):
        raise PackError(f"pack {root}: file {name!r} points outside the pack folder; refusing it")
    return path


def _check_folder(root: Path) -> None:
    """``root`` must be a folder: say what it is otherwise (missing, a file, a FIFO, a symlink
    loop, unreadable). Only ``stat`` is used, so a FIFO is never opened."""
    import stat

    try:
        mode = root.stat().st_mode
    except FileNotFoundError:
        kind = "a broken symlink" if root.is_symlink() else "the folder does not exist"
        raise PackError(f"no pack at {root}: {kind} (build one with msa-export)") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PackError(f"{root} is a symlink loop, not a pack folder: fix the link") from None
        raise PackError(f"{root} cannot be read ({exc.strerror or exc}): check the path") from None
    if not stat.S_ISDIR(mode):
        kind = (
            "a FIFO (named pipe)"
            if stat.S_ISFIFO(mode)
            else "a file"
            if stat.S_ISREG(mode)
            else "a socket or device"
        )
        raise PackError(f"{root} is {kind}, not a pack folder: give the folder msa-export wrote")


def write_manifest(folder: str | Path, data: Mapping[str, Any]) -> str:
    """Write ``manifest.json`` and ``manifest.sha256`` (its digest, in ``sha256sum`` form) into
    ``folder``, each atomically; returns the digest, which identifies the whole pack."""
    root = Path(folder)
    blob = (json.dumps(data, indent=2) + "\n").encode("utf-8")
    digest = hashlib.sha256(blob).hexdigest()
    for name, content in ((MANIFEST, blob), (MANIFEST_DIGEST, f"{digest}  {MANIFEST}\n".encode())):
        atomic_write_bytes(root / name, content)
    return digest


def _read_manifest(root: Path, expect: str | None, *, env: bool = True) -> tuple[bytes, str]:
    path = root / MANIFEST
    try:
        blob = read_bounded(
            path, MAX_MANIFEST_BYTES, label=f"pack {root}: {MANIFEST}", error=PackError, fix=_REBUILD
        )
        recorded = (
            read_bounded(
                root / MANIFEST_DIGEST,
                MAX_CONFIG_BYTES,
                label=f"pack {root}: {MANIFEST_DIGEST}",
                error=PackError,
                fix=_REBUILD,
            )
            .decode("ascii", errors="replace")
            .split()
        )
    except FileNotFoundError as exc:
        raise PackError(
            f"pack {root} has no {Path(str(exc.filename)).name}: it was exported by an older msa-edge or "
            "changed by hand; re-export it with msa-export"
        ) from None
    except OSError as exc:
        raise PackError(f"cannot read the manifest of pack {root}: {exc.strerror or exc}") from exc
    digest = hashlib.sha256(blob).hexdigest()
    if not recorded or recorded[0] != digest:
        raise PackError(
            f"pack {root}: {MANIFEST} does not match {MANIFEST_DIGEST} (edited or corrupted); "
            "rebuild or re-copy the pack"
        )
    if expect is None and env:
        expect = os.environ.get("MSA_EDGE_PACK_DIGEST") or None
    if expect is not None and expect.strip().lower() != digest:
        raise PackError(
            f"pack {root} has digest {digest}, not the expected {expect.strip()}: it is another pack or "
            "was altered; use the pack you meant or update the expected digest"
        )
    return blob, digest


def pack_digest(folder: str | Path) -> str:
    """The pack's digest: the sha256 of its ``manifest.json``, which holds the sha256 of every
    other file. Pin it (``digest=`` / ``MSA_EDGE_PACK_DIGEST``) to accept only that pack."""
    return _read_manifest(Path(folder), None, env=False)[1]


def load_manifest(
    folder: str | os.PathLike[str],
    *,
    verify: bool = True,
    digest: str | None = None,
    encoder_files: bool = True,
) -> Manifest:
    """Read and check ``folder/manifest.json``: its digest (``manifest.sha256``, and ``digest`` or
    ``MSA_EDGE_PACK_DIGEST`` when given), its schema (:func:`parse_manifest`), that every file it
    lists is inside the folder and present and, with ``verify``, every file's sha256.
    ``encoder_files=False`` leaves the encoders' files unhashed: a loader that uses one file per
    encoder hashes those with :func:`verify_files` before loading them."""
    root = Path(folder)
    _check_folder(root)
    if not (root / MANIFEST).exists():
        raise PackError(f"{root} is not a pack: it has no {MANIFEST} (build one with msa-export)")
    blob, _ = _read_manifest(root, digest)
    path = root / MANIFEST
    try:
        data = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise PackError(f"{path} is not valid JSON ({exc}); rebuild the pack") from exc
    manifest = parse_manifest(data, str(path))
    paths = {name: _inside(root, name) for name in manifest.files}
    for name, file in paths.items():
        _check_listed(root, name, file, manifest.files[name])
    asr = asr_folder(manifest)
    if asr is not None and (root / asr).is_dir():
        for file in sorted((root / asr).rglob("*")):
            rel = file.relative_to(root).as_posix()
            if not file.is_dir() and rel not in manifest.files:
                raise PackError(
                    f"pack {root}: {rel} is in the ASR model's folder but has no sha256 in the manifest "
                    "(it would be loaded unchecked); remove it or re-export the pack"
                )
    if verify:
        skip = set() if encoder_files else {f for e in manifest.encoders.values() for f in e.files.values()}
        verify_files(root, manifest, [name for name in manifest.files if name not in skip])
    return manifest


def _check_listed(root: Path, name: str, file: Path, meta: FileRecord) -> None:
    """A listed file must be a regular file of the size the manifest records (at most
    :data:`MAX_PACK_FILE_BYTES`), checked with ``stat`` before anything hashes or loads it."""
    label = f"pack {root}: {name}"
    try:
        size = check_regular(file, MAX_PACK_FILE_BYTES, label=label, error=PackError, fix=_REBUILD)
    except FileNotFoundError:
        raise PackError(f"pack {root} is incomplete: {name} is missing; rebuild or re-copy it") from None
    except OSError as exc:
        raise PackError(f"{label} cannot be read ({exc.strerror or exc}); {_REBUILD}") from None
    recorded = meta.get("bytes")
    if recorded is not None and size != recorded:
        raise PackError(
            f"{label} is {size_text(size)} ({size} bytes) but the manifest records {recorded} bytes "
            f"(truncated or replaced); {_REBUILD}"
        )


def verify_files(folder: str | Path, manifest: Manifest, names: Iterable[str]) -> None:
    """Check the sha256 of the pack files ``names`` against ``manifest``."""
    root = Path(folder)
    for name in names:
        meta = manifest.files.get(name)
        if meta is None or sha256_file(_inside(root, name)) != meta.get("sha256"):
            raise PackError(
                f"pack {root}: {name} does not match its sha256 in the manifest (tampered or "
                "corrupted); rebuild or re-copy the pack"
            )
