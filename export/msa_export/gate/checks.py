"""The parity gate's measure and thresholds: one :class:`Check` per file, output and input length.

Every file of a pack is compared with PyTorch on the gate's inputs (:mod:`msa_export.gate.inputs`):
fp32 on the CPU EP exactly (:data:`FP32_ATOL`), everything else by cosine (:data:`MIN_COSINE`) and,
through the head, by score (:data:`MAX_SCORE_DIFF`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from msa_export.errors import ValidationError

FP32_ATOL = 1e-4
MIN_COSINE = 0.999
MAX_SCORE_DIFF = 0.02  # on every validation input, through the (trained) head


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each feature vector (last axis) of ``a`` with that of ``b``."""
    a2 = a.reshape(-1, a.shape[-1]).astype(np.float64)
    b2 = b.reshape(-1, b.shape[-1]).astype(np.float64)
    num = (a2 * b2).sum(-1)
    den = np.linalg.norm(a2, axis=-1) * np.linalg.norm(b2, axis=-1) + 1e-12
    return num / den


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The smallest cosine similarity over feature vectors (last axis)."""
    return float(cosines(a, b).min())


@dataclass
class Check:
    """One parity measurement of one file on one input length."""

    file: str
    precision: str
    output: str
    length: int
    max_abs: float
    cosine: float  # mean over feature vectors: the pass criterion for int8/fp16
    score_diff: float | None = None
    min_cosine: float | None = None
    provider: str = "cpu"  # the execution provider the file was checked through

    @property
    def exact(self) -> bool:
        """fp32 on the CPU EP must match PyTorch to FP32_ATOL; everything else (int8, fp16, and
        fp32 on OpenVINO, which runs it in bf16 where it can) is judged by cosine and score."""
        return self.precision == "fp32" and self.provider == "cpu"

    def passed(self) -> bool:
        if self.exact and self.max_abs > FP32_ATOL:
            return False
        if not self.exact and self.cosine < MIN_COSINE:
            return False
        return self.score_diff is None or self.score_diff <= MAX_SCORE_DIFF

    def describe(self) -> str:
        if self.exact:
            return f"max |diff| {self.max_abs:.2e} (limit {FP32_ATOL:.0e})"
        text = f"mean cosine {self.cosine:.5f} (at least {MIN_COSINE})"
        if self.min_cosine is not None:
            text += f", worst vector {self.min_cosine:.5f}"
        if self.score_diff is not None:
            text += f", score diff {self.score_diff:.4f} (max {MAX_SCORE_DIFF})"
        return text


def compare(
    file: str,
    precision: str,
    output: str,
    length: int,
    got: np.ndarray,
    ref: np.ndarray,
    provider: str = "cpu",
) -> Check:
    if got.shape != ref.shape:
        raise ValidationError(
            f"{file}: output {output} has shape {got.shape}, PyTorch gives "
            f"{ref.shape} (input length {length}); the export is wrong"
        )
    return Check(
        file=file,
        precision=precision,
        output=output,
        length=length,
        max_abs=float(np.abs(got.astype(np.float64) - ref).max(initial=0.0)),
        cosine=float(cosines(got, ref).mean()),
        min_cosine=cosine(got, ref),
        provider=provider,
    )


def worst_failure(checks: Sequence[Check]) -> None:
    """Raise :class:`ValidationError` naming the worst failing check, if any failed."""
    failed = [c for c in checks if not c.passed()]
    if not failed:
        return
    worst = max(failed, key=lambda c: c.max_abs if c.exact else 1 - c.cosine)
    raise ValidationError(
        f"{worst.file}: output {worst.output} at input length {worst.length} "
        f"fails parity with PyTorch: {worst.describe()}; no pack was written"
    )


@dataclass
class Gate:
    """The verdict of the parity gate on one candidate int8 file."""

    checks: list[Check]
    score_limit: float | None = None  # the search's stricter score bound (None: the gate's own)

    @property
    def passed(self) -> bool:
        if self.score_limit is not None and any(
            c.score_diff is not None and c.score_diff > self.score_limit for c in self.checks
        ):
            return False
        return all(c.passed() for c in self.checks)

    def worst(self) -> Check | None:
        limit = self.score_limit

        def bad(c: Check) -> bool:
            return not c.passed() or (limit is not None and (c.score_diff or 0.0) > limit)

        failed = [c for c in self.checks if bad(c)] or list(self.checks)
        if not failed:
            return None
        return max(failed, key=lambda c: (1 - c.cosine, c.score_diff or 0.0))

    def describe(self) -> str:
        w = self.worst()
        if w is None:
            return "no checks"
        if w.output == "score" and w.score_diff is not None:
            from msa_export.gate.checks import MAX_SCORE_DIFF

            limit = MAX_SCORE_DIFF if self.score_limit is None else min(self.score_limit, MAX_SCORE_DIFF)
            return f"score at input {w.length}: diff {w.score_diff:.4f} (max {limit:g})"
        return f"{w.output} at input {w.length}: {w.describe()}"
