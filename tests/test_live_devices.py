"""Devices as live sources (``msa_runtime.live.capture``, ``pcm+jpeg`` sessions): a camera and a
microphone captured with PyAV (here FFmpeg's generated ``lavfi`` sources, read through the same
device path as ``v4l2:``/``alsa:``) reach the server as records, and the server's windows equal
the local scoring of the very bytes it received. Bad devices and bad records are one-line errors;
the server keeps no session, thread or descriptor of them. Everything binds 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from media_factory import make_clip

pytest.importorskip("uvicorn", reason="the live extra is not installed: pip install 'msa-edge[live]'")
from test_live import END, errors, session, settled, usage  # noqa: E402

from msa_runtime.errors import MediaError  # noqa: E402
from msa_runtime.live import LiveError, LiveServer, stream_records  # noqa: E402
from msa_runtime.live.capture import Device, parse_device  # noqa: E402
from msa_runtime.live.client import plan_sources  # noqa: E402

MSA_RUN = Path(sys.executable).with_name("msa-run")
CAMERA = "lavfi:testsrc=size=96x72:rate=15"
MICROPHONE = "lavfi:sine=frequency=300:sample_rate=44100"
VOLATILE = ("timings_ms", "latency_ms")


@pytest.fixture(scope="module")
def device_an(tiny_pack: Path) -> Iterator[Any]:
    from msa_runtime import Analyzer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        an = Analyzer(tiny_pack)
    yield an
    an.close()


def test_device_names() -> None:
    assert parse_device("v4l2:/dev/video0") == Device("v4l2", "/dev/video0")
    assert parse_device("video4linux2:/dev/video2") == Device("video4linux2", "/dev/video2")
    assert parse_device("alsa:default") == Device("alsa", "default")
    assert parse_device("clip.mp4") is None and parse_device("C:/clips/a.mp4") is None
    assert parse_device("nosuchformat:thing") is None
    with pytest.raises(MediaError, match="missing.mp4: no such file: --connect streams one media file"):
        plan_sources(("missing.mp4",))
    with pytest.raises(LiveError, match="at most two devices"):
        plan_sources((CAMERA, MICROPHONE, CAMERA))


def test_camera_and_microphone_windows_equal_local_scoring_of_what_arrived(
    device_an: Any, tmp_path: Path
) -> None:
    # a clip read as a camera and a microphone: sources that run ahead of real time
    clip = make_clip(tmp_path / "clip.webm", duration=5.0, size=(96, 72), fps=15)
    camera, microphone = f"lavfi:movie={clip}", f"lavfi:amovie={clip}"
    with LiveServer(device_an, record_dir=tmp_path) as server:
        assert server.socket.getsockname()[0] == "127.0.0.1"
        before = usage()
        messages: list[dict[str, Any]] = []
        got = list(stream_records(server.url, camera, microphone, window=2.0, hop=1.0, seconds=3.5,
                                  messages=messages))  # fmt: skip
        settled(before, server)
    ready = messages[0]
    assert ready["format"] == "pcm+jpeg" and ready["fps"] == device_an.fps
    # 3.5 s captured; the frames sampled last (at the pack's rate) reach up to two periods beyond
    assert [(r["start"], r["end"]) for r in got][:2] == [(0.0, 2.0), (1.0, 3.0)]
    assert len(got) == 3 and got[2]["start"] == 2.0 and 3.5 <= got[2]["end"] <= 3.5 + 2 / device_an.fps
    assert all(r["modalities"] == ["audio", "vision"] for r in got), got
    assert got[0]["input"] == f"{camera} + {microphone}"
    # each window left the server soon after its end arrived: both sources were paced to real
    # time (unpaced, the audio's records queued behind the frames and fell seconds behind)
    lags = [m["lag_ms"] for m in messages if m["type"] == "window"]
    assert max(lags[:-1]) < 700, lags  # here 2-4 ms; 1,364 ms unpaced
    (recorded,) = tmp_path.glob("session-*.pcm+jpeg")
    windows = device_an.stream(str(recorded), window=2.0, hop=1.0, format="pcm+jpeg")
    local = [p.record(digits=4) for p in windows]
    assert len(local) == len(got)
    for g, r in zip(got, local):
        assert {k: v for k, v in g.items() if k not in (*VOLATILE, "input")} == {
            k: v for k, v in r.items() if k not in (*VOLATILE, "input")
        }


def test_msa_run_connect_with_devices(device_an: Any) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [str(MSA_RUN), "--connect", server.url, *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120)

    with LiveServer(device_an) as server:
        before = usage()
        ok = run(MICROPHONE, "--end", "2.5", "--window", "2", "--hop", "1", "--format", "jsonl")
        assert ok.returncode == 0, ok.stderr
        rows = [json.loads(x) for x in ok.stdout.splitlines()]
        assert [(r["start"], r["modalities"]) for r in rows] == [(0.0, ["audio"]), (1.0, ["audio"])]
        assert rows[1]["end"] == pytest.approx(2.5, abs=0.05)  # the last audio frame read
        missing = run("v4l2:/dev/no-such-camera")
        assert missing.returncode == 1
        assert missing.stderr.startswith("error: cannot open v4l2:/dev/no-such-camera ("), missing.stderr
        twice = run(MICROPHONE, MICROPHONE, "--end", "1")
        assert "both give audio: give one camera and one microphone" in twice.stderr, twice.stderr
        nothing = run("nothing-here.webm")
        assert "nothing-here.webm: no such file" in nothing.stderr and nothing.returncode != 0
        for bad in (missing, twice, nothing):
            assert "Traceback" not in bad.stderr
        settled(before, server)


def test_malformed_records_end_their_session_with_a_message(device_an: Any) -> None:
    with LiveServer(device_an) as server:
        before = usage()
        junk = session(server, {"type": "start", "format": "pcm+jpeg"}, [b"not records" * 10, END])
        assert errors(junk) == [
            "the stream, record 0: kind byte 6e is neither A (audio) nor V (video): the stream is not "
            "pcm+jpeg records (see msa_runtime.media.records)"
        ], junk
        settled(before, server)


def test_ctrl_c_ends_a_capture_and_its_last_windows_still_come(device_an: Any) -> None:
    import signal
    import time

    with LiveServer(device_an) as server:
        before = usage()
        argv = [str(MSA_RUN), "--connect", server.url, MICROPHONE, "--window", "2", "--hop", "1",
                "--format", "jsonl"]  # fmt: skip
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            first = json.loads(proc.stdout.readline())  # the first window: capture is running
            time.sleep(1.2)
            proc.send_signal(signal.SIGINT)
            rest, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
        rows = [first, *(json.loads(x) for x in rest.splitlines())]
        assert proc.returncode == 0, err
        assert first["end"] == 2.0 and rows[-1]["end"] >= 3.0 and "real-time factor" in err, (rows, err)
        assert "Traceback" not in err
        settled(before, server)
