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

EXTRA = "pip install 'msa-edge[serve]'"


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


class TritonServer:
    """The server process for a model ``repository``; a context manager (stops it on exit).

    ``http_port``/``grpc_port`` 0 pick free ports. ``log`` is where the server's output goes
    (default: a file in the work folder, quoted in errors)."""

    def __init__(
        self,
        repository: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        http_port: int = 8000,
        grpc_port: int = 8001,
        metrics_port: int | None = None,
        log: IO[Any] | None = None,
    ) -> None:
        self.repository = Path(repository)
        self.host = host
        self.http_port = http_port or free_port(host)
        self.grpc_port = grpc_port or free_port(host)
        self.metrics_port = metrics_port
        self._log = log
        self.process: subprocess.Popen[bytes] | None = None
        self._work: tempfile.TemporaryDirectory[str] | None = None
        self.log_path: Path | None = None

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
        prefix = f"msa{os.getpid()}-{self.http_port}"
        return [
            str(binary),
            "--model-repository", str(self.repository),
            "--backend-directory", str(backends),
            "--http-address", self.host, "--http-port", str(self.http_port),
            "--grpc-address", self.host, "--grpc-port", str(self.grpc_port),
            *metrics,
            "--exit-on-error", "true",
            "--backend-config", f"python,shm-region-prefix-name={prefix}",
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
        return env

    def start(self, timeout: float = 120.0) -> TritonServer:
        """Start and wait (at most ``timeout`` s) until the server and its models are ready."""
        for name, port in (("--http-port", self.http_port), ("--grpc-port", self.grpc_port)):
            if not port_free(self.host, port):
                raise InputError(f"port {port} on {self.host} is taken: choose another with {name}")
        if self.metrics_port is not None and not port_free(self.host, self.metrics_port):
            raise InputError(
                f"port {self.metrics_port} on {self.host} is taken: choose another --metrics-port"
            )
        if not (self.repository / "msa" / "config.pbtxt").is_file():
            raise InputError(f"{self.repository} is not a model repository written by msa-triton / msa-serve")
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
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log_tail()
                self.stop()
                raise ServeError(f"Triton exited with code {self.process.returncode}: {tail}")
            if self.ready():
                return self
            time.sleep(0.25)
        tail = self.log_tail()
        self.stop()
        raise ServeError(f"Triton was not ready after {timeout:.0f} s: {tail}")

    def ready(self) -> bool:
        """``GET /v2/health/ready`` answers 200 (server and models loaded)."""
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, lines: int = 8) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return "(log not captured)"
        text = self.log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        useful = [t for t in text if "E" == t[:1] or "error" in t.lower()] or text
        return " | ".join(useful[-lines:])

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout`` s) and remove its work folder."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        if self._work is not None:
            self._work.cleanup()
            self._work = None

    def __enter__(self) -> TritonServer:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
