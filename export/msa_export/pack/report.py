"""What ``msa-export`` reports about a pack it built: one row per file with its parity."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from msa_export.gate.checks import Check
from msa_runtime.pack import PRECISIONS, FileRecord


@dataclass
class FileRow:
    file: str
    precision: str
    bytes: int
    parity: str


@dataclass
class BuildReport:
    out: Path
    rows: list[FileRow] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0
    trained_head: bool = False
    notes: list[str] = field(default_factory=list)  # e.g. which MatMuls int8 kept in fp32
    left_out: list[str] = field(default_factory=list)  # default files this machine cannot validate


def file_rows(files: Mapping[str, FileRecord], checks: Sequence[Check]) -> list[FileRow]:
    """One row per pack file: precision, size, and its parity with PyTorch (and on OpenVINO)."""
    out: list[FileRow] = []
    for n, meta in files.items():
        plain = "fp32" if n.endswith(".onnx") else ""
        precision = next((p for p in PRECISIONS if f".{p}." in n), plain)
        mine = [c for c in checks if c.file == n]
        own = [c for c in mine if c.provider == "cpu"] or mine
        on_ov = [c.cosine for c in mine if c.provider == "openvino" and c.precision == "fp32"]
        part = f"{n.split('.')[0]}.{precision}"
        scores = [c.score_diff for c in checks if c.score_diff is not None and part in c.file.split("+")]
        parity = _parity_text(own, scores)
        if on_ov:
            parity += f"; on OpenVINO (bf16) cos {min(on_ov):.5f}"
        out.append(FileRow(file=n, precision=precision, bytes=int(meta["bytes"]), parity=parity))
    return out


def _parity_text(own: Sequence[Check], scores: Sequence[float]) -> str:
    if not own:
        return "-"
    if own[0].exact:
        text = f"max|diff| {max(c.max_abs for c in own):.1e}"
    else:
        text = f"cos {min(c.cosine for c in own):.5f}"
    if scores:
        text += f", score ±{max(scores):.4f}"
    return text
