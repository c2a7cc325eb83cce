"""The pack's fusion head: export it to ONNX and check its scores on every encoder variant.

:func:`export_head` is the head step of :func:`msa_export.pack.build.build_pack`: the head's ONNX
file must give PyTorch's score on the encoders' reference features, and the score from each
precision's features (int8, fp16, OpenVINO) must stay within the gate's score limit.
:func:`untrained_scorer` builds the seeded untrained head up front, so the int8 search of a
build without a checkpoint also sees scores.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from msa_export.convert.onnx_file import export_onnx, run_onnx
from msa_export.gate.checks import Check, compare, worst_failure
from msa_export.gate.inputs import HeadScorer
from msa_export.models.heads import FlatHead, HeadConfig, build_head, head_io
from msa_export.pack.encoder import Encoded, Progress
from msa_export.pack.preflight import encoder_config
from msa_export.presets.registry import Preset
from msa_runtime.scoring.core import Features, feature, head_feeds


def _head_feeds(
    names: list[str], encoded: dict[str, Encoded], case: int, feats_of: Callable[[Encoded, int], np.ndarray]
) -> dict[str, np.ndarray]:
    """Inputs of the head for validation case ``case``: one clip, every modality present, built
    by the runtime's :func:`msa_runtime.scoring.core.head_feeds` as serving builds them."""
    feats: Features = {}
    for mod, e in encoded.items():
        i = case % len(e.inputs)
        x = feats_of(e, i)
        if mod == "text":
            feats[mod] = feature(x[:1], e.inputs[i][1][:1].numpy())
        else:  # audio [1, T, D]; vision [frames, D] gets its batch axis
            feats[mod] = feature(x)
    return head_feeds(feats, list(encoded), names=names)


def export_head(
    cfg: HeadConfig,
    head: torch.nn.Module,
    encoded: dict[str, Encoded],
    tmp: Path,
    exporter: str,
    progress: Progress,
) -> list[Check]:
    progress(f"head: exporting the {cfg.kind} fusion head")
    names, axes = head_io(cfg)
    flat = FlatHead(head).eval()
    cases = max(len(e.inputs) for e in encoded.values())
    ref_feeds = [_head_feeds(names, encoded, c, lambda e, i: e.reference[i]) for c in range(cases)]
    # batch 2 and lengths 3: the exporter would freeze any axis whose example size is 1
    g = torch.Generator().manual_seed(0)
    example = tuple(
        torch.ones(2, len(cfg.dims))
        if n == "present"
        else torch.ones(2, 3)
        if n.endswith("_mask")
        else torch.randn(2, 3, cfg.dims[n], generator=g)
        for n in names
    )
    path = export_onnx(
        flat,
        example,
        tmp / "head.onnx",
        input_names=names,
        output_names=("score", "gates"),
        dynamic_axes=axes,
        exporter=exporter,
    )
    checks: list[Check] = []
    with torch.no_grad():
        torch_scores = [flat(*(torch.from_numpy(v) for v in f.values()))[0].numpy() for f in ref_feeds]
    for c, feeds in enumerate(ref_feeds):
        got = run_onnx(path, feeds)[0]
        checks.append(compare(path.name, "fp32", "score", c, got[:, None], torch_scores[c][:, None]))
    first = next(iter(encoded.values())).by_precision
    for precision in [p for p in first if all(p in e.by_precision for e in encoded.values())]:

        def variant(e: Encoded, i: int, p: str = precision) -> np.ndarray:
            return e.by_precision[p][i]

        for c in range(cases):
            feeds = _head_feeds(names, encoded, c, variant)
            got = run_onnx(path, feeds)[0]
            diff = float(np.abs(got - torch_scores[c]).max())
            parts = [
                f"{m}.{e.ov_label if precision == 'openvino' else precision}" for m, e in encoded.items()
            ]
            checks.append(
                Check(
                    file="+".join(parts) + "+head",
                    precision=precision,
                    output="score",
                    length=c,
                    max_abs=diff if precision == "fp32" else 0.0,
                    cosine=1.0,
                    score_diff=diff,
                )
            )
    worst_failure(checks)
    return checks


def untrained_scorer(preset: Preset, offline: bool | None) -> HeadScorer | None:
    """The seeded untrained head the pack will carry, built up front from the encoders'
    configurations (so the int8 search sees its scores too); None when a size is unknown."""
    dims: dict[str, int] = {}
    for mod, card in preset.encoders.items():
        size = (encoder_config(card, offline) or {}).get("hidden_size")
        if not isinstance(size, int):
            return None
        dims[mod] = size
    h = preset.head
    cfg = HeadConfig(kind=h.kind, dims=dims, hidden=h.hidden, embed=h.embed, heads=h.heads, dropout=h.dropout)
    return HeadScorer(cfg, build_head(cfg, seed=h.seed))
