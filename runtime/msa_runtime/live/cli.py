"""``msa-live``: serve a pack to live clients over WebSocket, with the demo page at ``/``."""

from __future__ import annotations

import sys
import warnings
from typing import Any

import click

from msa_runtime.errors import MsaError
from msa_runtime.limits import bound_threads


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--pack", required=True, type=click.Path(), help="Pack folder (msa-export).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but the loopback needs --token.")  # fmt: skip
@click.option("--port", type=int, default=8765, show_default=True, help="Port (0: a free one).")
@click.option("--token", default=None, help="Bearer token clients must give (default: MSA_EDGE_LIVE_TOKEN).")
@click.option(
    "--asr", help="Live transcription for sessions without text: a Whisper size, folder, or 'pack'."
)
@click.option("--language", help="Language spoken (Whisper code), with --asr.")
@click.option(
    "--threads", type=int, default=None, help="Threads per ONNX session (default: MSA_EDGE_THREADS)."
)
@click.option("--providers", default=None, help="As msa-run --providers.")
@click.option("--max-sessions", type=int, default=None, help="Sessions at once (default 4).")
@click.option("--max-rate", type=int, default=None, help="Bytes per second per session (default 1,000,000).")
@click.option(
    "--idle", type=float, default=None, help="Seconds without data before a session is closed (20)."
)
@click.option("--record-dir", type=click.Path(), default=None,
              help="Keep each session's bytes here as received (debugging).")  # fmt: skip
def main(**p: Any) -> None:
    """Serve PACK to live clients: open http://HOST:PORT/ for the demo page (camera + microphone),
    or stream a file with msa-run --connect http://HOST:PORT FILE."""
    from msa_runtime.analyzer import Analyzer
    from msa_runtime.live.config import LiveLimits, check_binding, require_extra
    from msa_runtime.live.server import LiveServer

    try:  # everything a user typed is checked before the pack loads
        require_extra()
        token = check_binding(p["host"], p["token"])
        threads = None if p["threads"] is None else bound_threads(p["threads"], "--threads")
        limits = LiveLimits.from_env(max_sessions=p["max_sessions"], max_rate=p["max_rate"], idle=p["idle"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the untrained-head note is in every record
            an = Analyzer(p["pack"], p["providers"], threads, asr=p["asr"], language=p["language"])
        an.warm_up()
        server = LiveServer(an, p["host"], p["port"], token=token, limits=limits,
                            record_dir=p["record_dir"], log_level="info")  # fmt: skip
    except MsaError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    ws = server.url.replace("http", "ws", 1)
    click.echo(
        f"msa-live: serving {p['pack']} at {server.url} (WebSocket {ws}/ws; "
        f"up to {limits.max_sessions} sessions)",
        err=True,
    )
    try:
        server.run()
    finally:
        an.close()


if __name__ == "__main__":
    main()
