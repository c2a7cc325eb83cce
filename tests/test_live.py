"""The live endpoint (``msa_runtime.live``, issue 25) on 127.0.0.1: windows equal to
:meth:`Analyzer.stream` on the same bytes, ``msa-run --connect`` giving ``msa-run --stream``'s
records, and every kind of bad client ending its own session with a message while the server
goes on and keeps no session, thread or file descriptor of it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from media_factory import make_clip

pytest.importorskip("uvicorn", reason="the live extra is not installed: pip install 'msa-edge[live]'")
psutil = pytest.importorskip("psutil")
from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from msa_runtime.live import LiveError, LiveLimits, LiveServer, stream_records  # noqa: E402
from msa_runtime.live.config import check_binding  # noqa: E402

MSA_RUN = Path(sys.executable).with_name("msa-run")
VOLATILE = ("timings_ms", "latency_ms")  # compute times differ from run to run
END = json.dumps({"type": "end"})  # a text message


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("live") / "clip.webm", duration=9.0, size=(96, 72), fps=15)


@pytest.fixture(scope="module")
def live_an(tiny_pack: Path) -> Iterator[Any]:
    from msa_runtime import Analyzer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        an = Analyzer(tiny_pack)
    an.warm_up()
    yield an
    an.close()


def usage() -> tuple[int, int]:
    """Threads and open file descriptors of this process."""
    return threading.active_count(), psutil.Process().num_fds()


def settled(before: tuple[int, int], server: LiveServer, timeout: float = 10.0) -> None:
    """No session left, and threads and descriptors back to ``before`` (within ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.app.sessions and usage() <= before:
            return
        time.sleep(0.05)
    names = sorted(t.name for t in threading.enumerate())
    raise AssertionError(
        f"leaked: sessions {list(server.app.sessions)}, threads/fds {usage()} > {before}: {names}"
    )


def session(
    server: LiveServer,
    start: dict[str, Any] | None,
    send: tuple[bytes | str, ...] | list[bytes | str] = (),
    **kw: Any,
) -> list[dict[str, Any]]:
    """Open a WebSocket, send ``start`` and ``send``, and return every message until the
    server closes."""
    url = server.url.replace("http", "ws", 1) + "/ws" + kw.pop("query", "")
    got: list[dict[str, Any]] = []
    with connect(url, **kw) as ws:
        try:
            if start is not None:
                ws.send(json.dumps(start))
            for data in send:
                ws.send(data)
        except ConnectionClosed:
            pass  # the server ended the session while we sent: its messages still follow
        try:
            while True:
                got.append(json.loads(ws.recv(timeout=30)))
        except ConnectionClosed:
            pass
    return got


def errors(messages: list[dict[str, Any]]) -> list[str]:
    return [m["message"] for m in messages if m["type"] == "error"]


def test_windows_equal_analyzer_stream_and_nothing_is_left(live_an: Any, clip: Path) -> None:
    reference = [p.record(digits=4) for p in live_an.stream(str(clip))]
    with LiveServer(live_an) as server:
        assert server.socket.getsockname()[0] == "127.0.0.1"
        before = usage()
        for _ in range(2):  # a second session on the same server gives the same windows
            messages: list[dict[str, Any]] = []
            got = list(stream_records(server.url, clip, messages=messages))
            assert [m["type"] for m in messages][:1] == ["ready"] and messages[-1]["type"] == "done"
            assert len(got) == len(reference) == 3
            for g, r in zip(got, reference):
                assert g["input"] == str(clip)
                assert {k: v for k, v in g.items() if k not in (*VOLATILE, "input")} == {
                    k: v for k, v in r.items() if k not in VOLATILE
                }
        settled(before, server)


def test_msa_run_connect_prints_the_records_of_msa_run_stream(
    live_an: Any, clip: Path, tiny_pack: Path
) -> None:
    def lines(*args: str) -> list[dict[str, Any]]:
        out = subprocess.run([str(MSA_RUN), *args, "--format", "jsonl", str(clip)], capture_output=True,
                             text=True, timeout=120)  # fmt: skip
        assert out.returncode == 0, out.stderr
        return [
            {k: v for k, v in json.loads(x).items() if k not in VOLATILE} for x in out.stdout.splitlines()
        ]

    local = lines("--pack", str(tiny_pack), "--stream")
    with LiveServer(live_an) as server:
        remote = lines("--connect", server.url)
    assert remote == local and len(local) == 3
    down = subprocess.run([str(MSA_RUN), "--connect", "http://127.0.0.1:9", str(clip)], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert down.returncode != 0 and "Traceback" not in down.stderr
    assert down.stderr.startswith("error: cannot connect to http://127.0.0.1:9"), down.stderr


def test_bad_clients_end_their_own_session_with_a_message(live_an: Any, clip: Path) -> None:
    data = clip.read_bytes()
    limits = LiveLimits(idle=1.5, max_rate=200_000, burst=1.0, max_message=100_000)
    with LiveServer(live_an, limits=limits) as server:
        before = usage()
        bad_clients(server, data)
        settled(before, server)
        rss = psutil.Process().memory_info().rss
        bad_clients(server, data)  # again: nothing of the first round may pile up (6 MB here)
        settled(before, server)
        grown = (psutil.Process().memory_info().rss - rss) / 2**20
        assert grown < 24, f"resident memory grew {grown:.1f} MB over a second round of bad clients"
        pieces = [data[i : i + 50_000] for i in range(0, len(data), 50_000)]
        assert [m["type"] for m in session(server, {"type": "start"}, [*pieces, END])][-1] == "done"


def bad_clients(server: LiveServer, data: bytes) -> None:
    """Every kind of bad client once, each told why its session ended."""
    not_webm = session(server, {"type": "start", "format": "webm"}, [b"this is not a WebM stream" * 40, END])
    assert errors(not_webm)[0].startswith("the stream is not a media file FFmpeg can read"), not_webm
    silent = session(server, None)
    assert errors(silent) == ["no start message within 1.5 s: session closed"]
    stalled = session(server, {"type": "start"}, [data[:5000]])
    assert errors(stalled) == ["nothing received for 1.5 s: session closed"]
    pieces = [data[i : i + 50_000] for i in range(0, len(data), 50_000)]
    flood = session(server, {"type": "start"}, pieces * (4_000_000 // len(data)))  # 4 MB at once
    assert any("faster than 200,000 bytes/s" in e for e in errors(flood)), flood
    huge = session(server, {"type": "start"}, [os.urandom(150_000)])
    assert errors(huge) == ["a message of 150,000 bytes is over the limit of 100,000: send smaller chunks"]
    bad_start = session(server, {"type": "start", "format": "mp3"})
    assert errors(bad_start) == ["format must be one of ['matroska', 'pcm+jpeg', 's16le', 'webm'], got 'mp3'"]
    window = session(server, {"type": "start", "window": 0})
    assert "window must be seconds in (0, 60]" in errors(window)[0]
    third = len(data) // 3  # a gap: the middle third of the stream never arrives
    gap = session(server, {"type": "start"}, [data[:third], data[2 * third :], END])
    kinds = [m["type"] for m in gap]
    assert kinds[-1] in ("done", "error") and "ready" in kinds, kinds


def test_token_and_session_cap(live_an: Any, clip: Path) -> None:
    token = "s3cret-token"
    with LiveServer(live_an, token=token, limits=LiveLimits(max_sessions=1, idle=20)) as server:
        before = usage()
        assert errors(session(server, {"type": "start"})) == [
            "wrong or missing token: give ?token=... or Authorization: Bearer"
        ]
        assert errors(session(server, {"type": "start"}, query="?token=wrong-token"))
        url = server.url.replace("http", "ws", 1) + "/ws"
        with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as first:
            first.send(json.dumps({"type": "start"}))
            assert json.loads(first.recv(timeout=10))["type"] == "ready"
            busy = session(server, {"type": "start"}, query=f"?token={token}")
            assert errors(busy) == ["server busy: 1 session at once is the limit; try again later"]
        with pytest.raises(LiveError, match="server ended the session: wrong or missing token"):
            list(stream_records(server.url, clip, token="not-the-token"))
        deadline = time.monotonic() + 10  # the server notices the first client left
        while server.app.sessions and time.monotonic() < deadline:
            time.sleep(0.02)
        records = list(stream_records(server.url, clip, token=token))
        assert len(records) == 3
        settled(before, server)
        assert server.app.refused == 4


def test_binding_beyond_loopback_needs_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MSA_EDGE_LIVE_TOKEN", raising=False)
    assert check_binding("127.0.0.1", None) is None
    with pytest.raises(LiveError, match="binding to 0.0.0.0 exposes the endpoint .* give --token"):
        check_binding("0.0.0.0", None)
    assert check_binding("0.0.0.0", "long-enough") == "long-enough"
    monkeypatch.setenv("MSA_EDGE_LIVE_TOKEN", "from-the-env")
    assert check_binding("::", None) == "from-the-env"
    with pytest.raises(LiveError, match="at least 8"):
        check_binding("127.0.0.1", "short")
    with pytest.raises(LiveError, match="max-sessions must be a whole number > 0"):
        LiveLimits.from_env(max_sessions=0)
    monkeypatch.setenv("MSA_EDGE_LIVE_IDLE", "soon")
    with pytest.raises(LiveError, match="MSA_EDGE_LIVE_IDLE must be a number"):
        LiveLimits.from_env()


def test_a_slow_client_gets_dropped_windows_counted(live_an: Any) -> None:
    from msa_runtime.live.session import LiveSession

    async def run() -> list[dict[str, Any]]:
        s = LiveSession(live_an, LiveLimits(queue=2), format="webm")
        for i in range(5):  # five windows while the client reads none
            s._put({"type": "window", "start": float(i)})
        s._put({"type": "done"})
        out = [await s.next_message() for _ in range(3)]
        await s.cancel()
        return out

    got = asyncio.run(run())
    assert [(m["type"], m.get("start"), m.get("dropped")) for m in got] == [
        ("window", 3.0, 3), ("window", 4.0, 3), ("done", None, None)
    ]  # fmt: skip


def test_raw_pcm_windows_score_like_the_arrays(live_an: Any, tmp_path: Path) -> None:
    import numpy as np

    rate = live_an.sample_rate
    pcm = (np.sin(np.arange(rate * 8) / rate * 2 * np.pi * 300) * 8000).astype("<i2")
    path = tmp_path / "tone.pcm"
    path.write_bytes(pcm.tobytes())
    with LiveServer(live_an) as server:
        got = list(stream_records(server.url, path))
    assert [(r["start"], r["end"], r["modalities"]) for r in got] == [
        (0.0, 6.0, ["audio"]),
        (2.0, 8.0, ["audio"]),
    ]
    for r in got:
        a, b = round(r["start"] * rate), round(r["end"] * rate)
        want = live_an.predict_arrays(audio=pcm[a:b].astype(np.float32) / 32768, sample_rate=rate)
        assert r["score"] == pytest.approx(want.score, abs=1e-4)


def test_msa_live_command_errors_are_one_line(tiny_pack: Path, live_an: Any) -> None:
    msa_live = Path(sys.executable).with_name("msa-live")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "MSA_EDGE_LIVE_TOKEN"}
        argv = [str(msa_live), "--pack", str(tiny_pack), *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)

    exposed = run("--host", "0.0.0.0")
    assert exposed.returncode == 2 and exposed.stderr.startswith("error: binding to 0.0.0.0 exposes")
    bad = run("--max-sessions", "0")
    assert bad.returncode == 2 and bad.stderr == "error: max-sessions must be a whole number > 0, got 0\n"
    with LiveServer(live_an) as server:
        taken = run("--port", str(server.port))
    assert taken.returncode == 2 and f"port {server.port} on 127.0.0.1 is taken" in taken.stderr
    assert "Traceback" not in exposed.stderr + bad.stderr + taken.stderr
