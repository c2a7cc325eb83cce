"""``msa-triton`` (write a Triton model repository for a pack) and ``msa-serve`` (run one)."""

from __future__ import annotations

import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from msa_runtime.errors import MsaError
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


@click.command(context_settings=_HELP)
@click.argument("pack", type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (HTTP and gRPC).")
@click.option("--http-port", type=int, default=8000, show_default=True)
@click.option("--grpc-port", type=int, default=8001, show_default=True)
@click.option("--metrics-port", type=int, help="Turn Prometheus metrics on, on this port (default: off).")
@click.option("--instances", type=int, default=1, show_default=True, help="Model instances (processes).")
@click.option("--threads", type=int, help="ONNX Runtime threads per session (default: its own).")
@click.option("--input-root", type=click.Path(), help="Directory PATH inputs may read (default: none).")
@click.option("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB, show_default=True)
@click.option("--stream", is_flag=True, help="Also serve msa_stream (gRPC, decoupled): window scores.")
@click.option("--repository", type=click.Path(), help="Where to write the model repository (default: temp).")
@click.option("--timeout", type=float, default=300.0, show_default=True, help="Seconds to wait for ready.")
def serve_main(
    pack: str,
    host: str,
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
    server: Any = None
    try:
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
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        # Ctrl-C stops msa-serve even when started from a shell's background job, which would
        # otherwise pass SIGINT on as ignored (Python then raises no KeyboardInterrupt)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        while server.process.poll() is None:
            time.sleep(0.5)
        click.echo(f"error: Triton stopped (code {server.process.returncode}): {server.log_tail()}", err=True)
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
