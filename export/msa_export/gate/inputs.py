"""Validation inputs and the parity gate that every int8/fp16 file of a pack must pass.

Besides the generated inputs of each encoder (several lengths, :mod:`msa_export.models.encoders`), text
encoders are validated on **utterances**, tokenised by the runtime's own tokenizer:

- ``--gate-text PATH`` (a dataset as ``msa-train`` reads it, dev split first, or a ``.txt`` file
  with one utterance per line);
- else the dev utterances a head checkpoint carries (``msa-train`` stores up to
  :data:`CHECKPOINT_UTTERANCES` of them in ``head.pt``);
- else :data:`DEFAULT_SENTENCES`, a few everyday sentences.

The gate (:func:`make_gate`) compares a file's features with PyTorch's on every input (mean
cosine over feature vectors, worst vector reported) and, with a trained head, the **score** the
head gives each input with those features against the score it gives with PyTorch's: at most
:data:`msa_export.gate.checks.MAX_SCORE_DIFF` on every utterance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from msa_export.errors import CalibrationError
from msa_export.gate.checks import Check, Gate, compare
from msa_export.models.heads import Checkpoint, FlatHead, HeadConfig, head_io
from msa_runtime.engine.sessions import make_session

CALIBRATION_ITEMS = 64
"""Utterances taken from a calibration set (dev split first) for the gate."""
CHECKPOINT_UTTERANCES = 64
"""Dev utterances ``msa-train`` stores in ``head.pt`` for the export's gate."""

DEFAULT_SENTENCES = (
    "i really loved this movie, the acting was wonderful",
    "it was okay i guess, nothing special",
    "what a waste of time, i would not recommend it to anyone",
    "the plot made no sense at all and the ending was terrible",
    "honestly one of the best films i have seen this year",
    "um so basically he goes to the city and uh meets her again",
    "i was a little bit disappointed but the music was great",
    "yes",
    "the first half is slow, but it gets much better after that and i ended up enjoying it a lot",
    "i hated it",
    "the special effects were impressive even though the story was weak",
    "my kids thought it was hilarious",
)


def load_utterances(path: str | Path, limit: int = CALIBRATION_ITEMS) -> list[str]:
    """Up to ``limit`` non-empty utterances of a calibration set: a ``.txt`` file (one per line)
    or a dataset :func:`msa_export.data.datasets.load_dataset` reads (dev split first)."""
    p = Path(path)
    if not p.exists():
        raise CalibrationError(
            f"calibration set {p} does not exist: give a dataset (label.csv, "
            "manifest) or a .txt file with one utterance per line"
        )
    if p.is_file() and p.suffix.lower() == ".txt":
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise CalibrationError(f"cannot read calibration set {p}: {exc}") from exc
        texts = [t.strip() for t in lines if t.strip()]
    else:
        from msa_export.data.datasets import load_dataset

        ds = load_dataset(p, require_splits=())
        order = {"dev": 0, "test": 1, "train": 2}
        texts = [
            s.text.strip() for s in sorted(ds.samples, key=lambda s: order.get(s.split, 3)) if s.text.strip()
        ]
    if not texts:
        raise CalibrationError(
            f"calibration set {p} has no usable item (no non-empty text): give utterances the pack will see"
        )
    return spread_texts(texts, limit)


def spread_texts(texts: Sequence[str], limit: int) -> list[str]:
    """``limit`` items spread evenly over ``texts`` (all of them when there are fewer)."""
    if len(texts) <= limit:
        return list(texts)
    idx = np.linspace(0, len(texts) - 1, limit).round().astype(int)
    return [texts[i] for i in idx]


@dataclass
class Case:
    """One validation input of an encoder: the feeds, PyTorch's output, and a label."""

    inputs: tuple[torch.Tensor, ...]
    reference: np.ndarray
    length: int
    utterance: bool = False


class HeadScorer:
    """Scores of a torch head from one modality's features, the other modalities absent (the
    heads are trained with modality dropout, so this is a use the pack serves)."""

    def __init__(self, cfg: HeadConfig, head: torch.nn.Module) -> None:
        self.cfg = cfg
        self.flat = FlatHead(head).eval()
        self.names, _ = head_io(cfg)

    def __call__(self, modality: str, feats: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        if modality not in self.cfg.dims:
            return np.zeros(0)
        x = feats.astype(np.float32)
        if x.ndim == 2:  # vision: one clip's frames
            x = x[None]
        batch = x.shape[0]
        m = mask.astype(np.float32) if mask is not None else np.ones(x.shape[:2], np.float32)
        feeds: dict[str, np.ndarray] = {}
        for mod, dim in self.cfg.dims.items():
            if mod == modality:
                feeds[mod], feeds[f"{mod}_mask"] = x, m
            else:
                feeds[mod] = np.zeros((batch, 1, dim), np.float32)
                feeds[f"{mod}_mask"] = np.zeros((batch, 1), np.float32)
        feeds["present"] = np.asarray([[float(mod == modality) for mod in self.cfg.dims]] * batch, np.float32)
        with torch.no_grad():
            score = self.flat(*(torch.from_numpy(feeds[n]) for n in self.names))[0]
        return score.numpy().astype(np.float64)


def make_gate(
    modality: str,
    precision: str,
    input_names: Sequence[str],
    output: str,
    cases: Sequence[Case],
    scorer: HeadScorer | None,
) -> Callable[[Path], tuple[Gate, list[np.ndarray]]]:
    """The gate of one encoder file: a :class:`~msa_export.gate.checks.Gate` over every case (feature
    parity, and the trained head's score when ``scorer`` is given) plus the file's outputs."""
    ref_scores = []
    for case in cases:
        mask = case.inputs[1].numpy() if modality == "text" else None
        ref_scores.append(scorer(modality, case.reference, mask) if scorer else None)

    def run(path: Path) -> tuple[Gate, list[np.ndarray]]:
        checks: list[Check] = []
        outs: list[np.ndarray] = []
        session = make_session(path, "cpu")  # one session per file: building one costs ~0.3 s
        for case, ref_score in zip(cases, ref_scores):
            feeds = {n: t.numpy() for n, t in zip(input_names, case.inputs)}
            got = np.asarray(session.run(None, feeds)[0])
            outs.append(got)
            checks.append(compare(path.name, precision, output, case.length, got, case.reference))
            if scorer is not None and ref_score is not None and ref_score.size:
                mask = case.inputs[1].numpy() if modality == "text" else None
                diff = float(np.abs(scorer(modality, got, mask) - ref_score).max())
                checks.append(
                    Check(
                        file=path.name,
                        precision=precision,
                        output="score",
                        length=case.length,
                        max_abs=0.0 if precision != "fp32" else diff,
                        cosine=1.0,
                        score_diff=diff,
                    )
                )
        return Gate(checks), outs

    return run


def text_cases(
    card_tokenizer: Callable[[str], tuple[np.ndarray, np.ndarray]],
    utterances: Sequence[str],
    reference: Callable[[tuple[torch.Tensor, ...]], np.ndarray],
) -> list[Case]:
    """One case per utterance (batch 1, as the runtime runs text)."""
    cases = []
    for text in utterances:
        ids, mask = card_tokenizer(text)
        x = (torch.from_numpy(ids), torch.from_numpy(mask))
        cases.append(Case(inputs=x, reference=reference(x), length=int(ids.shape[1]), utterance=True))
    return cases


def validation_utterances(
    calibration: str | Path | None, ckpt: Checkpoint | None, has_text: bool
) -> tuple[list[str], str]:
    """The utterances a text encoder is validated on, and where they come from: ``calibration``,
    else the checkpoint's dev utterances, else :data:`DEFAULT_SENTENCES`. Read before any
    export work, so a bad calibration set fails fast."""
    if calibration is not None:
        texts = load_utterances(calibration)
        if not has_text:
            raise CalibrationError(
                f"--gate-text {calibration}: this pack has no text encoder; "
                "calibration utterances validate text encoders only"
            )
        return texts, f"{calibration} ({len(texts)} utterances)"
    if not has_text:
        return [], "none (no text encoder)"
    if ckpt is not None and ckpt.utterances:
        return list(ckpt.utterances), f"the checkpoint's dev utterances ({len(ckpt.utterances)})"
    return list(DEFAULT_SENTENCES), f"built-in sentences ({len(DEFAULT_SENTENCES)})"


def gate_cost(
    modality: str, cases: Sequence[Case], scorer: HeadScorer | None
) -> Callable[[int, np.ndarray, np.ndarray], float]:
    """The sensitivity measure of the int8 search, aligned with the gate: for case ``i``, the
    larger of ``(1 - mean cosine) / (1 - MIN_COSINE)`` and ``score diff / MAX_SCORE_DIFF`` (the
    score through the head, when there is one). 1.0 means "at the gate's limit"."""
    from msa_export.gate import checks

    ref_scores: dict[int, np.ndarray] = {}

    def cost(i: int, got: np.ndarray, ref: np.ndarray) -> float:
        value = (1.0 - float(checks.cosines(got, ref).mean())) / (1.0 - checks.MIN_COSINE)
        if scorer is not None and i < len(cases):
            mask = cases[i].inputs[1].numpy() if modality == "text" else None
            if i not in ref_scores:
                ref_scores[i] = scorer(modality, ref, mask)
            if ref_scores[i].size:
                diff = float(np.abs(scorer(modality, got, mask) - ref_scores[i]).max())
                value = max(value, diff / checks.MAX_SCORE_DIFF)
        return value

    return cost
