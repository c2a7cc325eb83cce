"""Why does int8 move a tail of unseen utterances? Per MatMul, per token, and what smoothing does.

For a pack with a trained text head (its ``text.fp32.onnx`` and head), score every test utterance
of a dataset through the head with the fp32 file and with variants of it, and report per variant
the largest / mean |score difference| to fp32 and how many utterances exceed 0.02:

- every weight MatMul in ONNX Runtime dynamic int8 (``quantize_int8``, what the search starts from);
- the same with only the activations quantized (DynamicQuantizeLinear, uint8 per tensor) or
  only the weights (int8 per output channel): which half of the arithmetic costs;
- each MatMul alone in int8 (the search's probe): which MatMuls;
- the activation statistics of each MatMul input over the test utterances: the channels that
  stand out, the tokens holding each utterance's largest value, and how the int8 error follows
  the utterance's activation range;
- the file smoothed (:mod:`msa_export.convert.smooth`, factors from the gate's utterances or the
  training set) then every MatMul in int8, for each ``--alpha``::

    python benchmarks/int8_diagnose.py --pack PACK --dataset ../shared/data/mosi/label.csv \\
        --alpha auto,0.5 --out diag.json
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

Feeds = dict[str, np.ndarray]


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pack", required=True, help="pack folder with text.fp32.onnx and a trained head")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--alpha", default="auto,0.5", help="comma-separated smoothing strengths (or auto)")
    ap.add_argument("--calib", default="dev64", help="smoothing statistics: dev64 (the gate's) or train")
    ap.add_argument("--limit", type=int, default=0, help="test utterances (0: all)")
    ap.add_argument(
        "--probe-top",
        type=int,
        default=120,
        help="per-MatMul probe on the N utterances plain int8 moves most",
    )
    ap.add_argument("--out", required=True, help="JSON file of the findings")
    return ap.parse_args()


class Scorer:
    """Tokens and head scores of the pack; runs ONNX variants of its text file."""

    def __init__(self, pack: Path) -> None:
        from msa_runtime import Analyzer

        self.an = Analyzer(pack, providers="cpu", precision="fp32")
        self.fp32 = pack / "text.fp32.onnx"

    def tokens(self, texts: Sequence[str]) -> list[Feeds]:
        assert self.an.text_encoder is not None
        out = []
        for t in texts:
            ids, mask = self.an.text_encoder(t)
            out.append({"input_ids": ids, "attention_mask": mask})
        return out

    def scores(self, path: Path, feeds: Sequence[Feeds], extra: Feeds | None = None) -> np.ndarray:
        from msa_runtime.engine.sessions import make_session
        from msa_runtime.scoring.core import feature

        session = make_session(path, "cpu")
        out = []
        for f in feeds:
            hidden = session.run(None, {**f, **(extra or {})})[0]
            out.append(self.an.score_features({"text": feature(hidden, f["attention_mask"])}).score)
        return np.asarray(out)


def fake_quant(model: onnx.ModelProto, nodes: Sequence[str], act: bool, weight: bool) -> None:
    """Put ``nodes`` on ONNX Runtime's dynamic int8 grid in place: activation (uint8 per tensor,
    DynamicQuantizeLinear) and/or weight (int8 symmetric per output channel)."""
    from msa_export.convert.int8_search import _fake_quant_weight

    inits = {i.name: i for i in model.graph.initializer}
    added: dict[int, list[onnx.NodeProto]] = {}
    for k, node in enumerate(model.graph.node):
        if node.name not in nodes or node.input[1] not in inits:
            continue
        if weight:
            w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
            inits[node.input[1]].CopyFrom(numpy_helper.from_array(_fake_quant_weight(w, 1), node.input[1]))
        if act:
            t = f"fq{k}"
            added[k] = [
                helper.make_node("DynamicQuantizeLinear", [node.input[0]], [f"{t}_q", f"{t}_s", f"{t}_z"]),
                helper.make_node("DequantizeLinear", [f"{t}_q", f"{t}_s", f"{t}_z"], [f"{t}_x"]),
            ]
            node.input[0] = f"{t}_x"
    graph = list(model.graph.node)
    del model.graph.node[:]
    for k, node in enumerate(graph):
        model.graph.node.extend(added.get(k, []))
        model.graph.node.append(node)


def diffs(d: np.ndarray) -> dict[str, float]:
    return {"max": float(d.max()), "mean": float(d.mean()), "over_0.02": int((d > 0.02).sum())}


def per_matmul(sc: Scorer, feeds: Sequence[Feeds], nodes: Sequence[str], ref: np.ndarray) -> dict[str, Any]:
    """Each MatMul alone in int8 (the search's probe model, one switch per MatMul)."""
    from msa_export.convert.int8_search import _probe

    model = onnx.load(str(sc.fp32))
    selects = _probe(model, nodes)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "probe.onnx"
        onnx.save_model(model, str(path))
        off = {s: np.zeros((), np.float32) for s in selects}
        for sel in selects:
            i = int(sel.rsplit("_", 1)[1])
            got = sc.scores(path, feeds, {**off, sel: np.ones((), np.float32)})
            out[nodes[i]] = {**diffs(np.abs(got - ref)), "per_utt": np.abs(got - ref)}
            print(f"  {nodes[i]}: {out[nodes[i]]['max']:.4f}", flush=True)
    return out


def activation_stats(
    sc: Scorer, feeds: Sequence[Feeds], tensors: Sequence[str], d: np.ndarray
) -> dict[str, Any]:
    """Per MatMul input: outlier channels, the tokens holding each utterance's largest value,
    and the correlation of the int8 error ``d`` with the utterance's activation range."""
    from msa_runtime.engine.sessions import make_session

    model = onnx.load(str(sc.fp32))
    for t in tensors:
        model.graph.output.append(helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "acts.onnx"
        onnx.save_model(model, str(path))
        session = make_session(path, "cpu")
        runs = [session.run(list(tensors), f) for f in feeds]
    for j, t in enumerate(tensors):
        per_ch = np.max([np.abs(r[j][0]).max(axis=0) for r in runs], axis=0)
        top = np.argsort(-per_ch)[:4]
        ranges = np.array([float(r[j][0].max() - r[j][0].min()) for r in runs])
        where = []  # (position kind, channel) of each utterance's largest |value|
        for r, f in zip(runs, feeds):
            x = np.abs(r[j][0])
            pos, ch = np.unravel_index(int(x.argmax()), x.shape)
            n = x.shape[0]
            kind = "[CLS]" if pos == 0 else "[SEP]" if pos == n - 1 else "word"
            where.append((kind, int(ch), int(f["input_ids"][0, pos])))
        kinds = {k: sum(1 for w in where if w[0] == k) for k in ("[CLS]", "[SEP]", "word")}
        chans: dict[int, int] = {}
        for w in where:
            chans[w[1]] = chans.get(w[1], 0) + 1
        out[t] = {
            "channels": int(per_ch.shape[0]),
            "top_channels": {int(c): round(float(per_ch[c]), 2) for c in top},
            "median_channel_absmax": round(float(np.median(per_ch)), 3),
            "ratio": round(float(per_ch.max() / np.median(per_ch)), 1),
            "range_min_median_max": [round(float(q), 2) for q in np.percentile(ranges, [0, 50, 100])],
            "argmax_token_kind": kinds,
            "argmax_channels": dict(sorted(chans.items(), key=lambda kv: -kv[1])[:4]),
            "corr_range_vs_int8_diff": round(float(np.corrcoef(ranges, d)[0, 1]), 3),
        }
    return out


def variant(sc: Scorer, feeds: Sequence[Feeds], ref: np.ndarray, make: Any, label: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "v.onnx"
        make(path)
        t0 = time.perf_counter()
        got = sc.scores(path, feeds)
        ms = 1000 * (time.perf_counter() - t0) / len(feeds)
    d = np.abs(got - ref)
    row = {"variant": label, **diffs(d), "ms_per_utt_incl_head": round(ms, 2), "per_utt": d}
    print(f"{label}: max {row['max']:.4f} mean {row['mean']:.4f} >0.02 {row['over_0.02']}", flush=True)
    return row


def main() -> None:
    from msa_export.convert.int8_search import weight_matmuls
    from msa_export.convert.onnx_file import quantize_int8
    from msa_export.convert.smooth import smooth_matmuls
    from msa_export.gate.inputs import spread_texts

    args = parse_args()
    sc = Scorer(Path(args.pack))
    rows = list(csv.DictReader(open(args.dataset, encoding="utf-8")))
    test_rows = [r for r in rows if r["mode"] == "test" and r["text"].strip()]
    if args.limit:
        test_rows = test_rows[: args.limit]
    test = sc.tokens([r["text"] for r in test_rows])
    dev = [r["text"] for r in rows if r["mode"] == "dev" and r["text"].strip()]
    train = [r["text"] for r in rows if r["mode"] == "train" and r["text"].strip()]
    calib = sc.tokens(spread_texts(dev, 64) if args.calib == "dev64" else train)
    ref = sc.scores(sc.fp32, test)
    base = onnx.load(str(sc.fp32))
    nodes = weight_matmuls(base)
    inputs_of = {n.name: n.input[0] for n in base.graph.node if n.name in nodes}

    def fq(act: bool, weight: bool) -> Any:
        def make(path: Path) -> None:
            m = onnx.load(str(sc.fp32))
            fake_quant(m, nodes, act, weight)
            onnx.save_model(m, str(path))

        return make

    found: dict[str, Any] = {"test_utterances": len(test), "matmuls": nodes}
    vs = [
        variant(sc, test, ref, lambda p: onnx.save_model(onnx.load(str(sc.fp32)), str(p)), "fp32 (timing)"),
        variant(sc, test, ref, lambda p: quantize_int8(sc.fp32, p), "int8, all MatMuls (ORT)"),
        variant(sc, test, ref, fq(True, False), "activations only (fake quant)"),
        variant(sc, test, ref, fq(False, True), "weights only (fake quant)"),
    ]
    int8_all = vs[1]["per_utt"]
    for a in [x if x == "auto" else float(x) for x in args.alpha.split(",")]:

        def smoothed(path: Path, a: float | str = a) -> None:
            s = path.with_name("s.onnx")
            found.setdefault("smoothing", {})[str(a)] = smooth_matmuls(
                sc.fp32, s, calib, nodes, a
            ).to_manifest()
            quantize_int8(s, path)

        vs.append(
            variant(sc, test, ref, smoothed, f"smoothed alpha {a} ({args.calib}), then int8 all MatMuls")
        )
    top = np.argsort(-int8_all)[: args.probe_top]
    print(f"per MatMul, on the {len(top)} utterances plain int8 moves most", flush=True)
    pm = per_matmul(sc, [test[i] for i in top], nodes, ref[top])
    found["probe_utterances"] = len(top)
    found["worst_utterances"] = [
        {
            "id": test_rows[i]["id"],
            "text": test_rows[i]["text"],
            "tokens": int(test[i]["input_ids"].shape[1]),
            "int8_diff": round(float(int8_all[i]), 4),
            "top_matmuls": {
                n: round(float(v["per_utt"][k]), 4)
                for n, v in sorted(pm.items(), key=lambda kv: -kv[1]["per_utt"][k])[:4]
            },
        }
        for k, i in enumerate(top[:8])
    ]
    found["variants"] = [{k: v for k, v in r.items() if k != "per_utt"} for r in vs]
    found["per_matmul"] = {n: {k: v for k, v in r.items() if k != "per_utt"} for n, r in pm.items()}
    found["activations"] = activation_stats(sc, test, sorted(set(inputs_of.values())), int8_all)
    found["matmul_inputs"] = inputs_of
    Path(args.out).write_text(json.dumps(found, indent=1) + "\n")
    print(json.dumps({k: found[k] for k in ("variants", "worst_utterances")}, indent=1))


if __name__ == "__main__":
    main()
