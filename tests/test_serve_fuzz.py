"""A bounded hypothesis fuzz of msa-serve on the real Triton server (127.0.0.1 only) over request
fields: PATH, CLIP sizes, TEXT, WINDOW, HOP. Each request is scored or refused as the caller's
error (HTTP 400/413, no "internal"), never shows the server's paths, never hangs. It found PATH
"é" answered 500 (the stub's Python read file names as ASCII)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pytriton", reason="the serve extra is not installed: pip install 'msa-edge[serve]'")
from test_serve_hardening import MAX_UPLOAD_MB, http_infer, make_media, serving, stream  # noqa: E402

from msa_runtime.serve import TritonServer  # noqa: E402


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_media(tmp_path_factory.mktemp("fuzz"))


@pytest.fixture(scope="module")
def server(tiny_pack: Path, media: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    with serving(tiny_pack, media, tmp_path_factory.mktemp("repo")) as s:
        yield s


hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is in the test extra")
from tritonclient.utils import InferenceServerException  # noqa: E402

st = hypothesis.strategies
_PIECES = [
    "..",
    ".",
    "/",
    "clip.mp4",
    "loop",
    "out",
    "long.mp4",
    "outside",
    "\0",
    "é",
    "%2e%2e",
    "~",
    "\\",
    " ",
]
PATHS = st.one_of(
    st.lists(st.sampled_from(_PIECES), max_size=8).map("/".join),
    st.lists(st.sampled_from(_PIECES), max_size=8).map("".join),
    st.text(max_size=40),
    st.just("a" * 5000),
)
SECONDS = st.one_of(
    st.sampled_from([0.01, 0.009, 0.5, 1.0, 2.0, 6.0, 600.0, 601.0, 0.0, -1.0]),
    st.floats(width=32, allow_nan=True, allow_infinity=True),
)
REQUESTS = st.fixed_dictionaries(
    {},
    optional={
        "path": PATHS,
        "clip": st.integers(0, int((MAX_UPLOAD_MB + 2) * 2**20)).map(
            lambda n: b"\x1a\x45\xdf\xa3" + b"\0" * n
        ),
        "text": st.text(max_size=200),
        "window": SECONDS,
        "hop": SECONDS,
    },
)


def fuzz_error(server: TritonServer, media: Path, request: dict[str, Any]) -> str | None:
    """Send ``request`` (to msa_stream when it has WINDOW or HOP, else to msa over HTTP): the
    error message, None if it was scored. Fails on a 500 / INTERNAL, a server path or a hang."""
    if "window" in request or "hop" in request:
        if "path" not in request and "clip" not in request:
            request = {**request, "path": "clip.mp4"}
        _, errors = stream(server, request)
        message = errors[0] if errors else None
        assert message is None or "internal" not in message.lower(), message
    else:
        try:
            http_infer(server, timeout=60, **request)
            message = None
        except InferenceServerException as exc:
            message = str(exc)
            assert exc.status() in ("400", "413"), message
    assert message is None or (str(media) not in message and str(media.parent) not in message), message
    return message


@hypothesis.settings(
    max_examples=40, deadline=None, derandomize=True, database=None,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture, hypothesis.HealthCheck.too_slow],
)  # fmt: skip
@hypothesis.given(request=REQUESTS)
def test_fuzz_request_fields(server: TritonServer, media: Path, request: dict[str, Any]) -> None:
    """40 requests over PATH, CLIP sizes, TEXT, WINDOW and HOP: each is scored or refused as the
    caller's error (HTTP 400/413, no "internal"), never shows the server's paths, never hangs
    (60 s per request, 120 s per stream response), and the server keeps serving."""
    fuzz_error(server, media, request)
    assert server.process is not None and server.process.poll() is None
