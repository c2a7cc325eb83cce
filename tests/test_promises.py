"""README promises that had no test of their own: the missing-extra message and the thread
count flowing argument -> ``MSA_EDGE_THREADS`` -> ONNX Runtime's default."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from msa_runtime import Analyzer, MsaError
from msa_runtime.engine.sessions import make_session


def test_without_onnxruntime_the_runtime_names_the_extra(
    tiny_pack: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # "import onnxruntime" now fails
    with pytest.raises(MsaError) as info:
        Analyzer(tiny_pack)
    msg = str(info.value)
    assert "\n" not in msg
    assert "pip install 'msa-edge[cpu]'" in msg and "msa-edge[gpu]" in msg


def test_threads_argument_then_environment_then_default(
    tiny_pack: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    head = tiny_pack / "head.onnx"

    def threads(**kwargs: int) -> int:
        return int(make_session(head, "cpu", **kwargs).get_session_options().intra_op_num_threads)

    monkeypatch.delenv("MSA_EDGE_THREADS", raising=False)
    assert threads() == 0  # ONNX Runtime's own choice
    assert threads(threads=1) == 1
    monkeypatch.setenv("MSA_EDGE_THREADS", "2")
    assert threads() == 2
    assert threads(threads=1) == 1  # the argument wins
    monkeypatch.setenv("MSA_EDGE_THREADS", "two")
    with pytest.raises(MsaError, match="MSA_EDGE_THREADS must be an integer"):
        threads()
