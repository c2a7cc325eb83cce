"""``msa-run --connect URL SOURCE...``: stream a file, or a camera and a microphone, to a live
endpoint (``msa-live``) and print the records ``msa-run --stream`` would print for it, through
the same writers."""

from __future__ import annotations

import sys
from typing import Any

import click

from msa_runtime.cli.records import stream_summary
from msa_runtime.cli.writers import OutputError, open_writer
from msa_runtime.errors import MsaError

#: Options that act on a local pack: refused with --connect (the server holds the pack).
LOCAL_ONLY = ("pack", "transcript", "providers", "precision", "threads", "concurrent", "tune", "asr",
              "language", "offline", "long_window", "ray_address", "out", "actors", "ray_timeout",
              "start", "plot")  # fmt: skip


def run_connect(p: dict[str, Any]) -> None:
    """Check that ``p`` (msa-run's options) fits --connect, then stream its one input."""
    from msa_runtime.live.client import stream_records

    given = [f"--{name.replace('_', '-')}" for name in LOCAL_ONLY if p.get(name) not in (None, False)]
    if given:
        raise click.UsageError(f"--connect scores on the server: not with {', '.join(given)}")
    if not p["inputs"]:
        raise click.UsageError(
            "--connect streams one media file, or devices such as v4l2:/dev/video0 alsa:default"
        )
    name = " + ".join(p["inputs"])
    fmt = "s16le" if p["input_format"] == "s16le" else None
    writer = open_writer(
        p["fmt"], sys.stdout, live=True, names=[name], note=lambda m: click.echo(m, err=True)
    )
    totals = {"windows": 0.0, "latency": 0.0, "asr": 0.0, "end": 0.0}
    try:
        for rec in stream_records(
            p["connect"],
            *p["inputs"],
            text=p["text"],
            window=p["window"],
            hop=p["hop"],
            token=p["token"],
            format=fmt,
            seconds=p["end"],
        ):
            totals["windows"] += 1
            totals["latency"] += float(rec.get("latency_ms") or 0.0)
            totals["asr"] += float((rec.get("timings_ms") or {}).get("asr", 0.0))
            totals["end"] = max(totals["end"], float(rec.get("end") or 0.0))
            writer.write(rec)  # type: ignore[arg-type]
        writer.close()
    except MsaError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except OutputError as exc:
        click.echo(f"error: cannot write the results to standard output ({exc})", err=True)
        sys.exit(74)
    stream_summary(name, totals)
