"""Stream memory in the default run: the buffers a stream holds stay within window + hop.

:meth:`msa_runtime.Analyzer.stream` is a generator; after each window it yields, everything the
stream keeps alive is reachable from the generator's frame. This test walks that state (without
knowing its internal names: the Analyzer and its sessions are left out, numpy arrays are
counted) and checks it directly: samples of audio held, vectors of frame features held and raw
frames pending, all bounded by what a window plus a hop needs, and not growing with the length
of the input. The hour-long RSS check stays behind ``-m slow`` (test_stream_memory.py).
"""

from __future__ import annotations

import gc
import types
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from trained import make_sample, write_clip

from msa_runtime import Analyzer

WINDOW, HOP = 4.0, 2.0
SECONDS = 40.0


def held_arrays(gen: types.GeneratorType, exclude: object, limit: int = 200_000) -> list[np.ndarray]:
    """Every numpy array reachable from a suspended generator, not through ``exclude``."""
    seen: set[int] = {id(exclude)}
    arrays: dict[int, np.ndarray] = {}
    todo: list[object] = [gen]
    steps = 0
    while todo and steps < limit:  # bounded: a runaway walk fails the count below
        obj = todo.pop()
        steps += 1
        if id(obj) in seen or isinstance(obj, (type, types.ModuleType, str, bytes, int, float)):
            continue
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            arrays[id(obj)] = obj
            continue
        if isinstance(obj, types.GeneratorType):
            if obj.gi_frame is not None:
                todo.extend(obj.gi_frame.f_locals.values())
            if obj.gi_yieldfrom is not None:
                todo.append(obj.gi_yieldfrom)
            continue
        if isinstance(obj, types.FunctionType):  # closures only, never the module's globals
            todo.extend(c.cell_contents for c in obj.__closure__ or () if _filled(c))
            continue
        if isinstance(obj, types.MethodType):
            todo.append(obj.__self__)
            continue
        todo.extend(gc.get_referents(obj))
    assert steps < limit, "the stream's state is too large to walk"
    return list(arrays.values())


def _filled(cell: types.CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:
        return False
    return True


def footprint(arrays: list[np.ndarray], feature_dim: int) -> dict[str, int]:
    """Audio samples (1-D float arrays), feature vectors (last axis ``feature_dim``) and raw
    frames (H x W x 3 uint8) among ``arrays``."""
    out = {"audio_samples": 0, "feature_vectors": 0, "frames": 0, "bytes": 0}
    for a in arrays:
        out["bytes"] += a.nbytes
        if a.ndim == 1 and a.dtype == np.float32 and a.size != feature_dim:
            out["audio_samples"] += a.size
        elif a.ndim >= 1 and a.shape[-1] == feature_dim and a.dtype == np.float32:
            out["feature_vectors"] += a.size // feature_dim
        elif a.ndim == 3 and a.shape[-1] == 3 and a.dtype == np.uint8:
            out["frames"] += 1
    return out


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    samples = [
        make_sample(i % 3 - 1, (i + 1) % 3 - 1, (i + 2) % 3 - 1, seed=300 + i)
        for i in range(int(SECONDS / 2))
    ]
    return write_clip(tmp_path_factory.mktemp("long") / "long.mkv", samples)


def _windows(an: Analyzer, clip: Path) -> Iterator[tuple[float, dict[str, int]]]:
    dim = an.manifest.encoders["vision"].hidden_size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gen = an.stream(clip, text="the plot was average", window=WINDOW, hop=HOP)
        assert isinstance(gen, types.GeneratorType)
        for w in gen:
            yield float(w.end or 0.0), footprint(held_arrays(gen, an), dim)


def test_stream_buffers_stay_within_window_plus_hop(tiny_pack: Path, long_clip: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        an = Analyzer(tiny_pack, providers="cpu")
    rate = an.prep("audio").sample_rate
    fps = an.prep("vision").fps
    marks = list(_windows(an, long_clip))
    assert len(marks) == int((SECONDS - WINDOW) / HOP) + 1, [m[0] for m in marks]
    assert marks[-1][0] == pytest.approx(SECONDS)
    # audio: the buffer covers at most a window, a hop and a decoded chunk (<= 1 s); the current
    # window's slice may be counted again as a separate view, hence the factor 2
    max_samples = 2 * (WINDOW + HOP + 1.0) * rate
    for end, f in marks:
        assert f["audio_samples"] <= max_samples, (end, f)
        assert f["frames"] <= (HOP + 1.0) * fps + 2, (end, f)
    assert marks[-1][1]["audio_samples"] >= WINDOW * rate  # the walk does see the buffers
    # frame features (and the last window's encoder outputs): flat from the early windows on;
    # keeping every frame would add fps * (SECONDS - 10) = 90 vectors by the end
    early = [f for _, f in marks[2:5]]
    late = [f for _, f in marks[-4:]]
    most = max(f["feature_vectors"] for f in early)
    assert most >= WINDOW * fps
    assert max(f["feature_vectors"] for f in late) <= most + HOP * fps + 2, (early, late)
    assert max(f["bytes"] for f in late) <= max(f["bytes"] for f in early) * 1.1 + 16_000
