"""msa-serve on the real Triton server of nvidia-pytriton, on 127.0.0.1 only: scores over HTTP and
gRPC equal a direct Analyzer call, bad requests fail alone, a bounded load test, every listening
socket of the server's processes on loopback, a taken port refused in one line."""

from __future__ import annotations

import concurrent.futures
import ipaddress
import json
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from media_factory import make_clip, make_corrupt

from msa_runtime.errors import InputError
from msa_runtime.serve import TritonServer, write_python_repository
from msa_runtime.serve.server import free_port

pytest.importorskip("pytriton", reason="the serve extra is not installed: pip install 'msa-edge[serve]'")
import tritonclient.grpc as grpcclient  # noqa: E402
import tritonclient.http as httpclient  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

HOST = "127.0.0.1"
MAX_UPLOAD_MB = 0.5


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve-inputs")
    make_clip(root / "clip.mp4", duration=2.0)
    make_clip(root / "other.mp4", duration=3.0, tone_hz=220.0, color=(200, 40, 40))
    make_corrupt(root / "clip.mp4", root / "bad.mp4", at=0.0, length=100_000)
    return root


@pytest.fixture(scope="module")
def server(tiny_pack: Path, media: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    repo = write_python_repository(
        tiny_pack,
        tmp_path_factory.mktemp("repo") / "models",
        input_root=media,
        max_upload_mb=MAX_UPLOAD_MB,
        stream=True,
    )
    with TritonServer(repo, host=HOST, http_port=0, grpc_port=0) as s:
        yield s


def bytes_input(name: str, value: bytes, module: Any = httpclient) -> Any:
    tensor = module.InferInput(name, [1], "BYTES")
    tensor.set_data_from_numpy(np.array([value], dtype=np.object_))
    return tensor


def infer(client: Any, module: Any = httpclient, **inputs: bytes) -> dict[str, Any]:
    result = client.infer("msa", [bytes_input(k.upper(), v, module) for k, v in inputs.items()])
    record: dict[str, Any] = json.loads(result.as_numpy("RESULT")[0])
    assert float(result.as_numpy("SCORE")[0]) == pytest.approx(record["score"], abs=1e-4)
    return record


def test_scores_equal_analyzer_over_http_and_grpc(server: TritonServer, media: Path, an: Any) -> None:
    http = httpclient.InferenceServerClient(server.http_url)
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    assert http.is_server_live() and http.is_model_ready("msa") and grpc.is_server_ready()
    clip = media / "clip.mp4"
    direct = an.predict(clip, text="i loved it").to_dict(4)
    by_path = infer(http, path=b"clip.mp4", text=b"i loved it")
    by_bytes = infer(grpc, grpcclient, clip=clip.read_bytes(), text=b"i loved it")
    for record in (by_path, by_bytes):
        assert record["modalities"] == direct["modalities"] == ["text", "audio", "vision"]
        assert record["score"] == pytest.approx(direct["score"], abs=1e-4)
        assert record["gates"] == pytest.approx(direct["gates"], abs=1e-4)
    text_only = infer(http, text=b"what a dull film")
    assert text_only["modalities"] == ["text"]
    assert text_only["score"] == pytest.approx(an.predict(text="what a dull film").score, abs=1e-4)
    other = infer(http, path=b"other.mp4")
    assert other["score"] == pytest.approx(an.predict(media / "other.mp4").score, abs=1e-4)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"clip": b"corrupt"}, "uploaded CLIP"),
        ({"path": b"bad.mp4"}, "bad.mp4"),
        ({"clip": b"\0" * int(MAX_UPLOAD_MB * 2**20 + 1)}, "over this server's upload limit"),
        ({"path": b"../../etc/passwd"}, "outside the server's input root"),
        ({"text": b"   "}, "empty request"),
        ({"path": b"clip.mp4", "clip": b"x"}, "PATH or CLIP, not both"),
    ],
)
def test_bad_request_fails_alone(server: TritonServer, inputs: dict[str, bytes], message: str) -> None:
    http = httpclient.InferenceServerClient(server.http_url)
    with pytest.raises(InferenceServerException, match=message) as info:
        infer(http, **inputs)
    assert "Traceback" not in str(info.value)
    assert server.process is not None and server.process.poll() is None
    assert infer(http, text=b"still serving")["modalities"] == ["text"]


def stream_records(server: TritonServer, inputs: list[Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """One request to msa_stream over gRPC: the window records until the final response."""
    results: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        client.async_stream_infer("msa_stream", inputs, enable_empty_final_response=True)
        records, errors = [], []
        for _ in range(1000):
            result, error = results.get(timeout=120)
            if error is not None:
                errors.append(str(error))
                break
            if result.get_response().parameters["triton_final_response"].bool_param:
                break
            records.append(json.loads(result.as_numpy("RESULT")[0]))
        return records, errors
    finally:
        client.stop_stream()


def seconds(name: str, value: float) -> Any:
    tensor = grpcclient.InferInput(name, [1], "FP32")
    tensor.set_data_from_numpy(np.array([value], np.float32))
    return tensor


def test_stream_sends_window_scores(server: TritonServer, media: Path, an: Any) -> None:
    clip = media / "other.mp4"
    inputs = [bytes_input("CLIP", clip.read_bytes(), grpcclient), bytes_input("TEXT", b"so so", grpcclient)]
    records, errors = stream_records(server, [*inputs, seconds("WINDOW", 2.0), seconds("HOP", 1.0)])
    assert errors == []
    direct = [p.to_dict(4) for p in an.stream(clip, text="so so", window=2.0, hop=1.0)]
    assert len(records) == len(direct) >= 2
    for got, want in zip(records, direct):
        assert (got["start"], got["end"]) == (want["start"], want["end"])
        assert got["score"] == pytest.approx(want["score"], abs=1e-4)
    bad, errors = stream_records(server, [bytes_input("CLIP", b"corrupt", grpcclient), seconds("HOP", 1.0)])
    assert bad == [] and len(errors) == 1 and "uploaded CLIP" in errors[0]
    assert server.process is not None and server.process.poll() is None


def test_bounded_load(server: TritonServer, media: Path) -> None:
    """4 clients for 4 s, each sending clips (bytes and paths) and text: none may fail."""
    clip = (media / "clip.mp4").read_bytes()
    concurrency, seconds = 4, 4.0
    stop = time.monotonic() + seconds

    def client(k: int) -> tuple[list[float], int]:
        http = httpclient.InferenceServerClient(server.http_url)
        times, failed, i = [], 0, 0
        while time.monotonic() < stop and i < 10_000:
            inputs = [{"clip": clip}, {"path": b"other.mp4", "text": b"ok"}, {"text": b"fine"}][(i + k) % 3]
            t0 = time.perf_counter()
            try:
                infer(http, **inputs)
            except InferenceServerException:
                failed += 1
            times.append(time.perf_counter() - t0)
            i += 1
        return times, failed

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(client, range(concurrency)))
    wall = time.perf_counter() - t0
    latencies = np.array([t for times, _ in results for t in times]) * 1e3
    failures = sum(f for _, f in results)
    print(
        f"\nload: {concurrency} clients, {wall:.1f} s: {len(latencies)} requests, "
        f"{len(latencies) / wall:.1f}/s, p50 {np.percentile(latencies, 50):.0f} ms, "
        f"p99 {np.percentile(latencies, 99):.0f} ms, failed {failures}"
    )
    assert failures == 0
    assert len(latencies) >= concurrency


def v4(ip: str) -> str:
    addr = ipaddress.ip_address(ip)
    mapped = addr.ipv4_mapped if isinstance(addr, ipaddress.IPv6Address) else None
    return str(mapped or addr)


def test_every_listening_socket_is_loopback(server: TritonServer) -> None:
    psutil = pytest.importorskip("psutil")
    assert server.process is not None
    root = psutil.Process(server.process.pid)
    listening = []
    for proc in [root, *root.children(recursive=True)]:
        for conn in proc.net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN:
                listening.append((proc.pid, conn.laddr.ip, conn.laddr.port))
    # Triton's own ports (behind the front, which holds http_port/grpc_port); metrics off
    assert {port for _, _, port in listening} == {server.triton_http_port, server.triton_grpc_port}
    assert server.front is not None
    assert [s.getsockname()[:2] for s in server.front.sockets.values()] == [
        (HOST, server.http_port), (HOST, server.grpc_port)
    ]  # fmt: skip
    assert len(root.children()) >= 2  # the python stubs of msa and msa_stream were checked too
    # gRPC listens on an IPv6 socket bound to the IPv4-mapped 127.0.0.1 (::ffff:127.0.0.1): still
    # only the loopback address, not :: (all interfaces)
    assert all(v4(ip) == HOST for _, ip, _ in listening), listening
    with urllib.request.urlopen(f"http://{server.http_url}/v2/health/live", timeout=5) as r:
        assert r.status == 200


def test_onnx_form_bls_step_on_the_real_server(tiny_pack: Path, media: Path, tmp_path: Path, an: Any) -> None:
    """Form a with its four onnxruntime_onnx models swapped for python stand-ins running the same
    model.onnx files under the same configs (the PyPI server has no ONNX Runtime backend): the
    ``msa`` step's BLS requests go through the real server and the score equals Analyzer's."""
    import shutil

    from msa_runtime.serve import write_onnx_repository

    repo = write_onnx_repository(tiny_pack, tmp_path / "repo", pack_path=None, input_root=media)
    standin = Path(__file__).with_name("serve_standin_model.py")
    for config in repo.glob("msa_*/config.pbtxt"):
        text = config.read_text()
        assert 'platform: "onnxruntime_onnx"' in text
        config.write_text(text.replace('platform: "onnxruntime_onnx"', 'backend: "python"'))
        shutil.copyfile(standin, config.parent / "1" / "model.py")
    with TritonServer(repo, host=HOST, http_port=0, grpc_port=0) as s:
        http = httpclient.InferenceServerClient(s.http_url)
        record = infer(http, path=b"clip.mp4", text=b"i loved it")
        upload = infer(http, clip=(media / "clip.mp4").read_bytes())
        with pytest.raises(InferenceServerException, match="uploaded CLIP"):
            infer(http, clip=b"corrupt")
    direct = an.predict(media / "clip.mp4", text="i loved it")
    assert record["modalities"] == list(direct.modalities)
    assert record["score"] == pytest.approx(direct.score, abs=2e-4)
    assert upload["score"] == pytest.approx(an.predict(media / "clip.mp4").score, abs=2e-4)


def test_msa_serve_command_serves_then_stops(tiny_pack: Path, media: Path) -> None:
    psutil = pytest.importorskip("psutil")
    http_port = free_port()
    cli = Path(sys.executable).with_name("msa-serve")
    args = ["--http-port", str(http_port), "--grpc-port", "0", "--input-root", str(media)]
    proc = subprocess.Popen([str(cli), str(tiny_pack), *args], stderr=subprocess.PIPE, text=True)
    lines: list[str] = []  # msa-serve's stderr, read as it comes
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr or ()), daemon=True)
    reader.start()
    try:
        # ready once msa-serve says so (the server can answer /health a moment before: a Ctrl-C
        # then would stop msa-serve before it printed "serving")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and not any("serving" in x for x in lines):
            time.sleep(0.25)
        http = httpclient.InferenceServerClient(f"{HOST}:{http_port}")
        assert infer(http, path=b"clip.mp4")["modalities"] == ["audio", "vision"]
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "msa-serve started no server"
    finally:
        proc.send_signal(signal.SIGINT)
        try:  # msa-serve gives Triton 30 s to stop on SIGTERM, then kills it (and waits 30 s more)
            proc.wait(timeout=100)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            reader.join(timeout=10)
            pytest.fail("msa-serve did not stop within 100 s of Ctrl-C; stderr: " + "".join(lines)[-3000:])
        reader.join(timeout=10)
    err = "".join(lines)
    assert proc.returncode == 0, err
    assert "serving" in err and "stopping" in err and "Traceback" not in err
    psutil.wait_procs(children, timeout=30)
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)


def test_taken_port_is_one_line(tiny_pack: Path, tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind((HOST, 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        repo = write_python_repository(tiny_pack, tmp_path / "repo")
        with pytest.raises(InputError, match=f"port {port} on {HOST} is taken"):
            TritonServer(repo, http_port=port, grpc_port=0).start()
        cli = Path(sys.executable).with_name("msa-serve")
        done = subprocess.run(
            [str(cli), str(tiny_pack), "--http-port", "0", "--grpc-port", str(port),
             "--input-root", str(tmp_path)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"error: port {port} on {HOST} is taken: choose another with --grpc-port"
