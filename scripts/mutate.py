"""Mutation testing for msa-edge: break the product on purpose, check that the tests notice.

    .venv/bin/python scripts/mutate.py                 # every mutation, its own tests
    .venv/bin/python scripts/mutate.py --list          # what would be tried
    .venv/bin/python scripts/mutate.py -k stream,gate  # mutations whose id contains either
    .venv/bin/python scripts/mutate.py --all-tests     # the whole default suite per mutation

Each mutation is one small, meaningful change (a promise of the README broken: audio no longer
normalised, a loosened parity gate, a stream that never forgets...) applied to a **copy** of the
tree (``git ls-files``, in a temporary folder); the copy's packages are put first on
``PYTHONPATH`` so its mutated code is what the tests import (checked before the run). The
mutation's tests then run with ``pytest -x``: a failure means the mutant was *killed*; all
passing means it *survived*, and a survivor is the next test to write. A mutation whose text no
longer matches the code (the code moved) is reported as *stale*: update it.

Run before a release (a full run takes 20-40 minutes on 2 cores); the score goes in the release
notes. Exit status: 0 if every mutant was killed, 1 if any survived or went stale.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    id: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]
    why: str


M = Mutation
MUTATIONS: tuple[Mutation, ...] = (
    # -- preprocessing (docs/architecture.md: one preprocessing implementation) ----------------
    M(
        "audio-no-normalisation",
        "runtime/msa_runtime/preprocess/audio.py",
        "    if prep.normalize:\n",
        "    if False:\n",
        ("tests/test_references.py", "tests/test_trained_pack.py"),
        "audio is no longer normalised to zero mean, unit variance",
    ),
    M(
        "audio-no-padding",
        "runtime/msa_runtime/preprocess/audio.py",
        "    if x.size < minimum:\n",
        "    if False:\n",
        ("tests/test_references.py",),
        "short audio is not padded to min_seconds",
    ),
    M(
        "image-no-255",
        "runtime/msa_runtime/preprocess/vision.py",
        "squares.astype(np.float32) / 255.0",
        "squares.astype(np.float32) / 256.0",
        ("tests/test_references.py",),
        "pixels scaled by 1/256 instead of 1/255",
    ),
    M(
        "image-bgr",
        "runtime/msa_runtime/preprocess/vision.py",
        "np.ascontiguousarray(x.transpose(0, 3, 1, 2))",
        "np.ascontiguousarray(x[..., ::-1].transpose(0, 3, 1, 2))",
        ("tests/test_references.py",),
        "channels fed in BGR order",
    ),
    M(
        "image-std-mean-swap",
        "runtime/msa_runtime/preprocess/vision.py",
        "x = (x - np.asarray(prep.mean, np.float32)) / np.asarray(prep.std, np.float32)",
        "x = (x - np.asarray(prep.std, np.float32)) / np.asarray(prep.mean, np.float32)",
        ("tests/test_references.py",),
        "mean and std swapped",
    ),
    M(
        "image-top-left-crop",
        "runtime/msa_runtime/preprocess/vision.py",
        "top, left = (nh - size) // 2, (nw - size) // 2",
        "top, left = 0, 0",
        ("tests/test_references.py",),
        "top-left square instead of the centre",
    ),
    M(
        "image-bilinear",
        "runtime/msa_runtime/preprocess/vision.py",
        'interpolation="BICUBIC"',
        'interpolation="BILINEAR"',
        ("tests/test_references.py",),
        "bilinear resize instead of bicubic",
    ),
    M(
        "image-squash",
        "runtime/msa_runtime/preprocess/vision.py",
        "nw, nh = max(size, round(w * scale)), max(size, round(h * scale))",
        "nw, nh = size, size",
        ("tests/test_references.py",),
        "aspect ratio not kept before the crop",
    ),
    M(
        "tokens-drop-sep",
        "runtime/msa_runtime/preprocess/text.py",
        "ids = ids[: limit - 1] + ids[-1:]",
        "ids = ids[:limit]",
        ("tests/test_references.py",),
        "a cut text loses its closing [SEP]",
    ),
    M(
        "face-margin",
        "runtime/msa_runtime/preprocess/vision.py",
        "FACE_MARGIN = 0\n",
        "FACE_MARGIN = 20\n",
        ("tests/test_face.py", "tests/test_face_integration.py"),
        "the face crop gets facenet's default margin instead of the paper's 0",
    ),
    # -- the analyzer ---------------------------------------------------------------------------
    M(
        "no-resampling",
        "runtime/msa_runtime/scoring/clip.py",
        "samples = audio if sample_rate == rate else resample_audio(audio, sample_rate, rate)",
        "samples = audio",
        ("tests/test_trained_pack.py",),
        "predict_arrays ignores sample_rate (no resampling)",
    ),
    M(
        "absent-counts-as-present",
        "runtime/msa_runtime/scoring/core.py",
        "            present.append(0.0)\n",
        "            present.append(1.0)\n",
        ("tests/test_trained_pack.py", "tests/test_runtime.py"),
        "a missing modality is fed to the head as present zeros",
    ),
    M(
        "cpu-prefers-fp32",
        "runtime/msa_runtime/pack/manifest.py",
        '"cpu": ("int8", "fp32", "fp16")',
        '"cpu": ("fp32", "int8", "fp16")',
        ("tests/test_trained_pack.py", "tests/test_runtime.py"),
        "the CPU default precision is fp32 instead of int8",
    ),
    # -- streams --------------------------------------------------------------------------------
    M(
        "stream-keeps-frames",
        "runtime/msa_runtime/scoring/stream.py",
        "            self.cached.popleft()\n",
        "            break\n",
        ("tests/test_stream_buffers.py",),
        "frame features are never forgotten",
    ),
    M(
        "stream-keeps-audio",
        "runtime/msa_runtime/scoring/stream.py",
        "            drop = round((t - self.audio_start) * self.rate)\n",
        "            drop = 0\n",
        ("tests/test_stream_buffers.py",),
        "stream audio is never forgotten",
    ),
    # (a window also taking the frames of the hop before it is an equivalent mutant: those
    # frames are already forgotten when the window is scored)
    M(
        "stream-audio-offset",
        "runtime/msa_runtime/scoring/stream.py",
        "a = max(0, round((start - self.audio_start) * self.rate))",
        "a = max(0, round((start + 0.5 - self.audio_start) * self.rate))",
        ("tests/test_trained_pack.py", "tests/test_runtime.py"),
        "a stream window loses the first half second of its audio",
    ),
    # -- export: the parity gate ---------------------------------------------------------------
    M(
        "gate-int8-loose",
        "export/msa_export/gate/checks.py",
        "self.cosine < MIN_COSINE:",
        "self.cosine < MIN_COSINE - 0.5:",
        ("tests/test_parity_gate.py",),
        "int8/fp16 cosine gate loosened by 0.5",
    ),
    M(
        "gate-no-score",
        "export/msa_export/gate/checks.py",
        "return self.score_diff is None or self.score_diff <= MAX_SCORE_DIFF",
        "return True",
        ("tests/test_parity_gate.py",),
        "the score difference is never checked",
    ),
    M(
        "gate-fp32-loose",
        "export/msa_export/gate/checks.py",
        "if self.exact and self.max_abs > FP32_ATOL:",
        "if self.exact and self.max_abs > FP32_ATOL * 100:",
        ("tests/test_parity_gate.py", "tests/test_export.py"),
        "fp32 tolerance 1e-2 instead of 1e-4",
    ),
    M(
        "gate-reports-first",
        "export/msa_export/gate/checks.py",
        "worst = max(failed, key=lambda c: c.max_abs if c.exact else 1 - c.cosine)",
        "worst = failed[0]",
        ("tests/test_parity_gate.py",),
        "the error names the first failure, not the worst",
    ),
    # -- export: writing the pack --------------------------------------------------------------
    M(
        "force-ignored",
        "export/msa_export/pack/folder.py",
        '        if not force:\n            raise ExportError(f"{out} already exists',
        '        if True:\n            raise ExportError(f"{out} already exists',
        ("tests/test_cli_paths.py",),
        "--force no longer replaces an existing pack",
    ),
    M(
        "force-deletes-user-files",
        "export/msa_export/pack/folder.py",
        "    extra = _unlisted(out)\n",
        "    extra: list[str] = []\n",
        ("tests/test_packdir.py",),
        "--force deletes files of the user's that sit inside an old pack",
    ),
    M(
        "pack-hash-unchecked",
        "runtime/msa_runtime/pack/files.py",
        '        if meta is None or sha256_file(_inside(root, name)) != meta.get("sha256"):',
        "        if False:",
        ("tests/test_export.py",),
        "tampered files are accepted",
    ),
    # -- msa-run --------------------------------------------------------------------------------
    M(
        "batch-stops-at-bad-input",
        "runtime/msa_runtime/cli/run.py",
        "                failed += 1\n",
        "                raise\n",
        ("tests/test_runtime.py",),
        "a batch stops at the first bad input",
    ),
    M(
        "batch-exit-zero",
        "runtime/msa_runtime/cli/run.py",
        "        sys.exit(1)\n",
        "        sys.exit(0)\n",
        ("tests/test_runtime.py",),
        "a batch with failures exits 0",
    ),
)


def copy_tree(dest: Path) -> None:
    """The tracked files plus the untracked, unignored ones (work in progress) into ``dest``."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def environment(dest: Path) -> dict[str, str]:
    env = dict(os.environ)
    roots = [str(dest / "runtime"), str(dest / "export"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, roots))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def check_imports(dest: Path, python: str) -> None:
    code = (
        "import msa_runtime, msa_export, msa_export.presets.cards as c; "
        "print(msa_runtime.__file__, msa_export.__file__, list(c.__path__)[0])"
    )
    out = subprocess.run(
        [python, "-c", code], cwd=dest, env=environment(dest), check=True, capture_output=True, text=True
    ).stdout.split()
    if not all(p.startswith(str(dest)) for p in out):
        sys.exit(f"the copy's packages are not the ones imported: {out}")


def run(mutation: Mutation, dest: Path, python: str, all_tests: bool, timeout: float) -> dict:
    path = dest / mutation.file
    original = path.read_text(encoding="utf-8")
    count = original.count(mutation.old)
    if count != 1:
        return {"id": mutation.id, "result": "stale", "detail": f"{count} matches in {mutation.file}"}
    path.write_text(original.replace(mutation.old, mutation.new), encoding="utf-8")
    tests = ["tests"] if all_tests else list(mutation.tests)
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            [python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
            cwd=dest,
            env=environment(dest),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        code, tail = proc.returncode, (proc.stdout.strip().splitlines() or [""])[-1]
    except subprocess.TimeoutExpired:
        code, tail = -1, f"timed out after {timeout:.0f} s"
    finally:
        path.write_text(original, encoding="utf-8")
    result = (
        "survived" if code == 0 else "no tests ran" if code == 5 else "timeout" if code == -1 else "killed"
    )
    return {
        "id": mutation.id,
        "result": result,
        "seconds": round(time.perf_counter() - started, 1),
        "detail": tail,
        "why": mutation.why,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "-k",
        dest="keyword",
        default="",
        help="only mutations whose id contains this (comma-separated: any of these)",
    )
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument("--all-tests", action="store_true", help="run the whole default suite per mutant")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per mutant")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    keys = [k for k in args.keyword.split(",") if k] or [""]
    chosen = [m for m in MUTATIONS if any(k in m.id for k in keys)]
    if args.list:
        for m in chosen:
            print(f"{m.id:28s} {m.file:24s} {m.why}  [{' '.join(m.tests)}]")
        return 0
    python = sys.executable
    results = []
    with tempfile.TemporaryDirectory(prefix="msa-mutants-") as tmp:
        dest = Path(tmp)
        copy_tree(dest)
        check_imports(dest, python)
        for i, m in enumerate(chosen, 1):
            r = run(m, dest, python, args.all_tests, args.timeout)
            results.append(r)
            print(
                f"[{i}/{len(chosen)}] {r['result']:9s} {m.id:28s} {r.get('seconds', 0):6.1f}s  {r['detail']}",
                flush=True,
            )
    killed = sum(r["result"] == "killed" for r in results)
    bad = [r for r in results if r["result"] != "killed"]
    print(f"\nmutation score: {killed}/{len(results)} killed")
    for r in bad:
        print(f"  {r['result']}: {r['id']} ({r.get('why', r['detail'])})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
