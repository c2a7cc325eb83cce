"""Run the Triton Inference Server that ``nvidia-pytriton`` ships (extra ``msa-edge[serve]``).

The PyPI wheel carries a Triton 2.51 ``tritonserver`` binary with the python backend only, and
one python-backend stub per Python version. :class:`TritonServer` lays out a backend folder for
this interpreter (links, no copies), puts the interpreter's own ``LIBDIR`` first on
``LD_LIBRARY_PATH`` (else the stub loads the system's libpython) and this environment's ``bin``
first on ``PATH`` (the stub's interpreter then finds this environment's packages), starts the
server bound to one address with HTTP and gRPC, metrics off unless asked, and waits until the
models are ready.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

from msa_runtime.errors import InputError, MissingExtraError, MsaError
from msa_runtime.serve.front import Front
from msa_runtime.serve.scorer import DEFAULT_MAX_UPLOAD_MB

EXTRA = "pip install 'msa-edge[serve]'"
REQUEST_SLACK = 2**20
"""Bytes a request may carry beyond the upload limit: TEXT, PATH and the protocol's framing."""
LOOPBACK = "127.0.0.1"
STUB_GRACE = 5.0
"""Seconds the python stubs get to leave after Triton has stopped, before SIGKILL."""


class ServeError(MsaError):
    """The Triton server cannot start or stopped (the message holds the end of its log)."""


def pytriton_root() -> Path:
    """Where the ``nvidia-pytriton`` package lives (:class:`MissingExtraError` without it)."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(f"serving needs the Triton server of nvidia-pytriton: {EXTRA}")
    return Path(list(spec.submodule_search_locations)[0])


def port_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port the system says is free on ``host`` (for tests and benchmarks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM when the parent dies, even by SIGKILL, so a
    killed ``msa-serve`` leaves no server holding its ports."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def upload_limit(repository: Path) -> float:
    """The ``max_upload_mb`` the repository's model ``msa`` was written with (MB)."""
    config = (repository / "msa" / "config.pbtxt").read_text(encoding="utf-8")
    found = re.search(r'key: "max_upload_mb" value: \{ string_value: "([0-9.eE+-]+)" \}', config)
    return float(found.group(1)) if found else DEFAULT_MAX_UPLOAD_MB


_CAUSE = re.compile(r"failed to load '([^']+)'[^:]*: (?:[A-Za-z ]+: )?(.*)")


def load_failure(log: str) -> str | None:
    """One line for a model that failed to load: its name and the exception's last line (the
    python backend logs a traceback; what matters is the error it ends with)."""
    for line in log.splitlines():
        found = _CAUSE.search(line)
        if found is None:
            continue
        cause = found.group(2).strip()
        for marker in ("Error: ", "Exception: "):  # "...: MediaError: message" -> "MediaError: message"
            head, sep, tail = cause.rpartition(marker)
            if sep:
                cause = f"{head.rsplit(' ', 1)[-1].split('.')[-1]}{sep}{tail}" if head else cause
                break
        cause = cause.split("\\n")[0].split("  ")[0].strip()  # the log escapes the traceback's newlines
        return f"model {found.group(1)} failed to load: {cause}"
    return None


class TritonServer:
    """The server process for a model ``repository``; a context manager (stops it on exit).

    Triton listens on free loopback ports of its own; the public ``host`` and
    ``http_port``/``grpc_port`` (0 picks free ports) belong to a :class:`Front` that refuses
    requests over ``max_request_bytes`` before Triton reads them (default: the repository's upload
    limit plus :data:`REQUEST_SLACK`). ``log`` is where the server's output goes (default: a file
    in the work folder, quoted in errors)."""

    def __init__(
        self,
        repository: str | os.PathLike[str],
        *,
        host: str = LOOPBACK,
        http_port: int = 8000,
        grpc_port: int = 8001,
        metrics_port: int | None = None,
        max_request_bytes: int | None = None,
        log: IO[Any] | None = None,
    ) -> None:
        self.repository = Path(repository)
        self.host = host
        self.http_port, self.grpc_port = http_port, grpc_port
        self.metrics_port = metrics_port
        self.max_request_bytes = max_request_bytes
        self.triton_http_port = self.triton_grpc_port = 0
        self._log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.front: Front | None = None
        self._work: tempfile.TemporaryDirectory[str] | None = None
        self.log_path: Path | None = None
        self.shm_prefix = f"msa{os.getpid()}-{id(self) % 100000}"

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    def _backends(self, work: Path) -> Path:
        root = pytriton_root() / "tritonserver"
        version = f"{sys.version_info[0]}.{sys.version_info[1]}"
        stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.is_file():
            raise MissingExtraError(f"nvidia-pytriton has no python-backend stub for Python {version}")
        python = work / "backends" / "python"
        python.mkdir(parents=True)
        for item in (root / "backends" / "python").iterdir():
            if item.is_file():
                (python / item.name).symlink_to(item)
        (python / "triton_python_backend_stub").symlink_to(stub)
        return work / "backends"

    def command(self, backends: Path) -> list[str]:
        binary = pytriton_root() / "tritonserver" / "bin" / "tritonserver"
        metrics = ["--allow-metrics", "false"]
        if self.metrics_port is not None:
            metrics = ["--allow-metrics", "true", "--allow-gpu-metrics", "false"]
            metrics += ["--metrics-address", self.host, "--metrics-port", str(self.metrics_port)]
        return [
            str(binary),
            "--model-repository", str(self.repository),
            "--backend-directory", str(backends),
            "--http-address", LOOPBACK, "--http-port", str(self.triton_http_port),
            "--grpc-address", LOOPBACK, "--grpc-port", str(self.triton_grpc_port),
            *metrics,
            "--exit-on-error", "true",
            "--backend-config", f"python,shm-region-prefix-name={self.shm_prefix}",
            "--log-verbose", "0",
        ]  # fmt: skip

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        libs = [
            str(sysconfig.get_config_var("LIBDIR") or ""),
            str(pytriton_root().parent / "nvidia_pytriton.libs"),
        ]
        if env.get("LD_LIBRARY_PATH"):
            libs.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = ":".join(p for p in libs if p)
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        # the stub's interpreter would take the C locale's ASCII for file names: PATH "é" failed
        env["PYTHONUTF8"] = "1"
        return env

    def _check(self) -> None:
        if self.metrics_port is not None and not port_free(self.host, self.metrics_port):
            raise InputError(
                f"port {self.metrics_port} on {self.host} is taken: choose another --metrics-port"
            )
        if not (self.repository / "msa" / "config.pbtxt").is_file():
            raise InputError(f"{self.repository} is not a model repository written by msa-triton / msa-serve")

    def start(self, timeout: float = 120.0) -> TritonServer:
        """Start and wait (at most ``timeout`` s) until the server and its models are ready; on
        any failure every process started is ended and its shared memory removed."""
        self._check()
        limit = self.max_request_bytes or int(upload_limit(self.repository) * 2**20) + REQUEST_SLACK
        self.triton_http_port, self.triton_grpc_port = free_port(LOOPBACK), free_port(LOOPBACK)
        self.front = Front(
            self.host, self.http_port, self.grpc_port, self.triton_http_port, self.triton_grpc_port, limit
        )
        try:
            self.front.start()
            self.http_port, self.grpc_port = self.front.ports["--http-port"], self.front.ports["--grpc-port"]
            self._wait(self._launch(), timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self) -> subprocess.Popen[bytes]:
        self._work = tempfile.TemporaryDirectory(prefix="msa-triton-")
        work = Path(self._work.name)
        backends = self._backends(work)
        out: Any = self._log
        if out is None:
            self.log_path = work / "tritonserver.log"
            out = open(self.log_path, "wb")  # noqa: SIM115 (closed by the process's end)
        self.process = subprocess.Popen(
            self.command(backends),
            env=self.environment(),
            stdout=out,
            stderr=subprocess.STDOUT,
            # its own process group: stop() ends the python stubs with it, which outlive a
            # killed tritonserver and ignore SIGTERM while they load
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        return self.process

    def _wait(self, process: subprocess.Popen[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ServeError(f"Triton exited with code {process.returncode}: {self.log_tail()}")
            if self.ready():
                return
            time.sleep(0.25)
        raise ServeError(f"Triton was not ready after {timeout:.0f} s: {self.log_tail()}")

    def ready(self) -> bool:
        """``GET /v2/health/ready`` answers 200 on Triton's own port (server and models loaded)."""
        url = f"http://{LOOPBACK}:{self.triton_http_port}/v2/health/ready"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, lines: int = 3) -> str:
        """The cause of a failure in one line: a model's load error, else the log's last errors."""
        if self.log_path is None or not self.log_path.is_file():
            return "(log not captured)"
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        failure = load_failure(text)
        if failure is not None:
            return failure
        rows = [t.strip() for t in text.strip().splitlines() if t.strip()]
        useful = [t for t in rows if t[:1] == "E" or "error" in t.lower()] or rows
        useful = [t for t in useful if not t.startswith(("Traceback", "File ", "^"))]
        return " | ".join(useful[-lines:]) or "(empty log)"

    def _end_group(self, timeout: float) -> None:
        """SIGTERM to Triton's process group, SIGKILL to whatever is left after ``timeout`` s."""
        if self.process is None:
            return
        group = self.process.pid  # the group's id: start_new_session made Triton its leader
        try:
            os.killpg(group, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass  # SIGKILL below
        end = time.monotonic() + STUB_GRACE
        while time.monotonic() < end and _group_alive(group):
            time.sleep(0.1)
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            return
        self.process.wait(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the front and the server (its whole process group), remove its shared memory
        and its work folder."""
        if self.front is not None:
            self.front.stop()
            self.front = None
        self._end_group(timeout)
        for region in Path("/dev/shm").glob(f"{self.shm_prefix}*"):
            region.unlink(missing_ok=True)
        if self._work is not None:
            self._work.cleanup()
            self._work = None

    def __enter__(self) -> TritonServer:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True
