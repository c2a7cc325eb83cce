"""``msa-triton`` (write a Triton model repository for a pack) and ``msa-serve`` (run one)."""

from __future__ import annotations

import ipaddress
import signal
import socket
import sys
import tempfile
import time
import warnings
from pathlib import Path

import click

from msa_runtime.errors import InputError, MsaError
from msa_runtime.limits import bound_threads
from msa_runtime.serve.repository import write_onnx_repository, write_python_repository
from msa_runtime.serve.scorer import DEFAULT_MAX_UPLOAD_MB
from msa_runtime.serve.server import TritonServer

_HELP = {"help_option_names": ["-h", "--help"]}


def _fail(exc: MsaError) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(2)


@click.command(context_settings=_HELP)
@click.argument("pack", type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="Model repository folder to write.")
@click.option(
    "--form",
    type=click.Choice(["python", "onnx"]),
    default="python",
    show_default=True,
    help="python: one python-backend model wrapping the runtime (PyPI Triton, msa-serve); "
    "onnx: onnxruntime_onnx models per encoder and head + a BLS python step (official image).",
)
@click.option("--device", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True,
              help="onnx form: instance kind and file (cpu: int8, gpu: fp16).")  # fmt: skip
@click.option("--instances", type=int, default=1, show_default=True, help="Model instances (each model).")
@click.option("--threads", type=int, help="ONNX Runtime threads per session (default: its own).")
@click.option("--pack-path", default="/pack", show_default=True,
              help="onnx form: where the server sees the pack (the docker -v mount).")  # fmt: skip
@click.option("--copy-pack", is_flag=True, help="python form: put the pack inside the model (hard links).")
@click.option("--stream", is_flag=True, help="python form: add msa_stream (decoupled: window scores).")
@click.option("--input-root", type=click.Path(), help="Directory PATH inputs may read (default: none).")
@click.option("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB, show_default=True)
@click.option("--batching/--no-batching", default=None,
              help="onnx form: dynamic batching of the encoders (default: gpu on, cpu off).")  # fmt: skip
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --out.")
def triton_main(
    pack: str,
    out: str,
    form: str,
    device: str,
    instances: int,
    threads: int | None,
    pack_path: str,
    copy_pack: bool,
    stream: bool,
    input_root: str | None,
    max_upload_mb: float,
    batching: bool | None,
    overwrite: bool,
) -> None:
    """Write a Triton model repository for PACK (see README, Serving)."""
    try:
        if form == "python":
            write_python_repository(
                pack, out, instances=instances, copy_pack=copy_pack, input_root=input_root,
                max_upload_mb=max_upload_mb, threads=threads, stream=stream, overwrite=overwrite,
            )  # fmt: skip
        else:
            write_onnx_repository(
                pack, out, device=device, instances=instances, pack_path=pack_path or None,
                input_root=input_root, max_upload_mb=max_upload_mb, threads=threads, batching=batching,
                overwrite=overwrite,
            )  # fmt: skip
    except MsaError as exc:
        _fail(exc)
    click.echo(f"wrote {out} ({form} form)")


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback address (127.0.0.0/8, ::1)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name, not an address: what it resolves to decides
        pass
    try:
        found = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(found) and all(ipaddress.ip_address(a[4][0]).is_loopback for a in found)


def _checked_options(host: str, public: bool, threads: int | None, input_root: str | None) -> int | None:
    """Refuse or warn, in one line each, before anything starts."""
    if not is_loopback(host):
        if not public:
            raise InputError(
                f"--host {host} is not a loopback address: the server has no authentication, so anyone "
                "who reaches it could score clips and read the media under --input-root; "
                "pass --public to bind it anyway, behind your own network controls"
            )
        click.echo(f"warning: serving on {host} without authentication (--public)", err=True)
    if threads is not None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            threads = bound_threads(threads, "--threads")
        for w in caught:
            click.echo(f"warning: {w.message}", err=True)
    if input_root is None:
        click.echo("warning: no --input-root: PATH inputs are refused (clients upload CLIP bytes)", err=True)
    return threads


def _stop_on_signals() -> None:
    """SIGTERM and SIGHUP end msa-serve through its cleanup, like Ctrl-C."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(0))
    # Ctrl-C stops msa-serve even when started from a shell's background job, which would
    # otherwise pass SIGINT on as ignored (Python then raises no KeyboardInterrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)


@click.command(context_settings=_HELP)
@click.argument("pack", type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (HTTP and gRPC).")
@click.option(
    "--public", is_flag=True, help="Allow a --host that is not loopback (there is no authentication)."
)
@click.option("--http-port", type=int, default=8000, show_default=True)
@click.option("--grpc-port", type=int, default=8001, show_default=True)
@click.option("--metrics-port", type=int, help="Turn Prometheus metrics on, on this port (default: off).")
@click.option("--instances", type=int, default=1, show_default=True,
              help="Model instances (processes) of msa and of msa_stream; at most 2 per CPU.")  # fmt: skip
@click.option("--threads", type=int, help="ONNX Runtime threads per session (default: its own).")
@click.option("--input-root", type=click.Path(), help="Directory PATH inputs may read (default: none).")
@click.option("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB, show_default=True,
              help="Largest CLIP; a request over it + 1 MB is refused before Triton reads it.")  # fmt: skip
@click.option("--stream", is_flag=True, help="Also serve msa_stream (gRPC, decoupled): window scores.")
@click.option("--repository", type=click.Path(), help="Where to write the model repository (default: temp).")
@click.option("--timeout", type=float, default=300.0, show_default=True, help="Seconds to wait for ready.")
def serve_main(
    pack: str,
    host: str,
    public: bool,
    http_port: int,
    grpc_port: int,
    metrics_port: int | None,
    instances: int,
    threads: int | None,
    input_root: str | None,
    max_upload_mb: float,
    stream: bool,
    repository: str | None,
    timeout: float,
) -> None:
    """Serve PACK on Triton Inference Server (extra msa-edge[serve]) until interrupted."""
    tmp = None if repository else tempfile.TemporaryDirectory(prefix="msa-repo-")
    repo = Path(repository) if repository else Path(tmp.name) / "models"  # type: ignore[union-attr]
    server: TritonServer | None = None
    _stop_on_signals()  # before the start: a signal while it loads still ends every child
    try:
        threads = _checked_options(host, public, threads, input_root)
        write_python_repository(
            pack, repo, instances=instances, input_root=input_root, max_upload_mb=max_upload_mb,
            threads=threads, stream=stream, overwrite=repository is not None,
        )  # fmt: skip
        server = TritonServer(repo, host=host, http_port=http_port, grpc_port=grpc_port,
                              metrics_port=metrics_port)  # fmt: skip
        server.start(timeout)
        click.echo(
            f"serving {pack} as model 'msa': HTTP {server.http_url}, gRPC {server.grpc_url}"
            f"{'' if metrics_port is None else f', metrics {host}:{metrics_port}'} (Ctrl-C stops)",
            err=True,
        )
        while server.process is not None and server.process.poll() is None:
            time.sleep(0.5)
        code = None if server.process is None else server.process.returncode
        click.echo(f"error: Triton stopped (code {code}): {server.log_tail()}", err=True)
        sys.exit(1)
    except MsaError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        click.echo("stopping", err=True)
    finally:
        if server is not None:
            server.stop()
        if tmp is not None:
            tmp.cleanup()
