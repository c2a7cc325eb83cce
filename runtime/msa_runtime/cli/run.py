"""``msa-run``: score files, folders, globs or a live source with a pack (a thin shell over
:class:`msa_runtime.Analyzer`)."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import click

from msa_runtime import checks
from msa_runtime.cli import options as opt
from msa_runtime.cli import signals
from msa_runtime.cli.records import expand_inputs, failure_record, prediction_record, score_input
from msa_runtime.cli.writers import OutputError, open_writer, shown
from msa_runtime.errors import MsaError
from msa_runtime.plot.output import PlotTee


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("inputs", nargs=-1)
@click.option("--pack", type=click.Path(), help="Pack folder (msa-export); not with --connect.")
@click.option("--text", help="What was said (the same text for every input).")
@click.option(
    "--transcript",
    type=click.Path(),
    help="Transcript file: .txt, .srt or .vtt. Default: a sidecar with the input's name, if present.",
)
@click.option(
    "--format",
    "fmt",
    type=opt.Formats(),
    default="table",
    show_default=True,
)
@click.option(
    "--stream",
    is_flag=True,
    help="Score overlapping windows (files, devices, URLs, or - for standard input).",
)
@click.option(
    "--window", default=6.0, show_default=True, callback=opt.seconds, help="Window length in seconds."
)
@click.option(
    "--hop", default=2.0, show_default=True, callback=opt.seconds, help="Hop between windows in seconds."
)
@click.option(
    "--input-format",
    default=None,
    help="Format of the input instead of probing it: s16le for raw 16-bit mono PCM at the pack's "
    "rate on stdin (-), pcm+jpeg for device records with --stream (docs/live.md), or an FFmpeg "
    "format name (ffmpeg -formats). Default: standard input is "
    "sniffed (WAV, MP4, Matroska/WebM, Ogg, FLAC, MP3, ...), files are probed.",
)
@click.option(
    "--providers",
    default=None,
    callback=opt.providers,
    help="auto (CUDA, else OpenVINO where it offers this CPU, else CPU), cpu, cuda, "
    "openvino[:DEVICE] (openvino-native or openvino-ep for one route), or comma-separated "
    "ONNX Runtime provider names. Default: "
    "MSA_EDGE_PROVIDERS, else auto.",
)
@click.option(
    "--precision",
    type=click.Choice(["int8", "fp16", "fp32", "ov-int8"]),
    default=None,
    help="Force one file kind. Default: the pack's file for the provider (CPU int8, "
    "CUDA fp16, OpenVINO ov-int8 else fp32), or the tuning record's fastest.",
)
@click.option(
    "--threads",
    type=int,
    default=None,
    help="Threads per session (default: MSA_EDGE_THREADS, else ONNX Runtime's choice).",
)
@click.option(
    "--concurrent/--sequential",
    default=None,
    help="Run text, audio and vision on three threads at once (default: MSA_EDGE_CONCURRENT, else "
    "sequential).",
)
@click.option(
    "--tune",
    is_flag=True,
    help="Time every file of the pack on this machine's "
    "providers and write <pack>.tuning.json beside the pack (then score INPUT, if any).",
)
@click.option(
    "--asr",
    help="Transcribe inputs that have no text with this speech-recognition "
    "model: a Whisper size (tiny, base, small, ...), a CTranslate2 hub id or folder, "
    "or 'pack' (the pack's own). Needs msa-edge[asr].",
)
@click.option(
    "--language", help="Language spoken, as a Whisper code (en, de, ...); default: detected. With --asr."
)
@click.option(
    "--offline",
    is_flag=True,
    default=None,
    help="--asr uses only local folders and the hub cache (default: HF_HUB_OFFLINE).",
)
@click.option(
    "--long-window",
    type=float,
    default=None,
    help="Score inputs longer than this many seconds in equal windows of at most this length and "
    "average the window scores, weighted by duration: bounded memory on long files (default: "
    "MSA_EDGE_LONG_WINDOW, else 30).",
)
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="local",
    default=None,
    help="Score the inputs on Ray Data (msa-edge[ray]): 'local' (a single node on 127.0.0.1, "
    "the default when no value is given), 'auto' or HOST:PORT (a running cluster). Needs --out.",
)
@click.option(
    "--out",
    type=click.Path(),
    help="With --ray: *.jsonl (a file) or *.parquet (a folder); inputs already scored in it are skipped.",
)
@click.option(
    "--actors",
    type=int,
    default=None,
    callback=opt.actors,
    help="With --ray: actors (default: the cluster's CPUs).",
)
@click.option(
    "--ray-timeout",
    type=float,
    default=None,
    callback=opt.ray_timeout,
    help="With --ray HOST:PORT or auto: seconds to reach and join the cluster (default: "
    "MSA_EDGE_RAY_TIMEOUT, else 30).",
)
@click.option("--start", type=float, default=None, callback=opt.time_point, help="Score from this second on.")
@click.option(
    "--end",
    type=float,
    default=None,
    callback=opt.time_point,
    help="Score up to this second (default: the end).",
)
@click.option(
    "--plot",
    type=click.Path(),
    default=None,
    callback=opt.plot_file,
    help="Also draw the records into FILE.png (needs msa-edge[plot]) or FILE.html (one "
    "self-contained file): stream windows as score, gates and words over time; clips as bars.",
)
@click.option("--connect", metavar="URL", default=None,
              help="Stream INPUT to a live endpoint (msa-live at http://HOST:PORT; msa-edge[live]) "
              "and print its windows as --stream would. INPUT: a media file, or a camera and a "
              "microphone as FORMAT:DEVICE (v4l2:/dev/video0 alsa:default; --end SECONDS stops "
              "them, else Ctrl-C).")  # fmt: skip
@click.option("--token", default=None, help="With --connect: the server's bearer token.")
def main(**params: Any) -> None:
    """Score clips with a pack: INPUT may be files, folders or globs (and manifest CSVs with
    --ray); with no INPUT, --text."""
    log = logging.getLogger("msa_runtime")
    handler = opt.LogLine(logging.WARNING)
    log.addHandler(handler)
    try:
        with signals.handled(lambda m: click.echo(m, err=True)), warnings.catch_warnings():
            warnings.simplefilter("default")  # catch_warnings restores the machinery when done
            warnings.showwarning = opt.warn_line
            _run(params)
    except (signals.Stopped, KeyboardInterrupt) as exc:  # what was scored is in the output already
        sys.exit(signals.announce(exc))
    finally:
        log.removeHandler(handler)


def _run(p: dict[str, Any]) -> None:
    """Check the options that go together, then score on Ray, tune, or score here."""
    if p["connect"] is not None:
        from msa_runtime.cli.connect import run_connect

        return run_connect(p)
    if p["token"] is not None or p["pack"] is None:
        raise click.UsageError(
            "--token goes with --connect" if p["pack"] else "give --pack (or --connect URL)"
        )
    try:  # the numbers that size memory and work, checked under their option names
        from msa_runtime.limits import bound_threads, check_long_window

        threads = None if p["threads"] is None else bound_threads(p["threads"], "--threads")
        long_window = (
            None if p["long_window"] is None else check_long_window(p["long_window"], "--long-window")
        )
    except MsaError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    spanned = (p["start"], p["end"]) != (None, None)
    if p["ray_address"] is not None or p["out"] is not None:
        if p["stream"] or p["transcript"] is not None or p["asr"] is not None or p["tune"] or spanned:
            raise click.UsageError(
                "--ray scores whole inputs: not with --stream, --transcript, --asr, --tune, "
                "--start or --end (a manifest CSV gives spans)"
            )
        if p["plot"] is not None:
            raise click.UsageError("--plot draws msa-run's own output: not with --ray")
        from msa_runtime.cli.ray import run_cli

        run_cli(
            p["inputs"], p["pack"], p["ray_address"], p["out"], p["actors"], p["text"], p["providers"],
            p["precision"], threads, long_window, p["ray_timeout"],
        )  # fmt: skip
        return
    if p["actors"] is not None or p["ray_timeout"] is not None:
        raise click.UsageError("--actors and --ray-timeout go with --ray")
    if p["stream"] and spanned:
        raise click.UsageError("--start/--end score a span of a file: not with --stream")
    span = opt.span(p["start"], p["end"]) if spanned else (0.0, None)
    if p["tune"]:
        _tune(p["pack"], p["providers"], threads)
        if not p["inputs"] and p["text"] is None:
            return
    if p["language"] is not None and p["asr"] is None:
        raise click.UsageError("--language goes with --asr")
    _main(
        p["inputs"],
        p["pack"],
        p["text"],
        p["transcript"],
        p["fmt"],
        stream=p["stream"],
        window=p["window"],
        hop=p["hop"],
        input_format=p["input_format"],
        span=span,
        plot=p["plot"],
        options={
            "providers": p["providers"],
            "threads": threads,
            "precision": p["precision"],
            "asr": p["asr"],
            "language": p["language"],
            "offline": p["offline"],
            "long_window": long_window,
            "concurrent": p["concurrent"],
        },
    )


def _tune(pack: str, providers: str | None, threads: int | None) -> None:
    """Time the pack's files on this machine's providers (all of them for auto); write the
    record beside the pack."""
    from msa_runtime.engine.sessions import engines_to_tune
    from msa_runtime.loading.tuning import tune
    from msa_runtime.pack import load_manifest

    try:
        manifest = load_manifest(pack, digest=checks.pinned_digest(None))
        names = engines_to_tune(providers)
        path, record = tune(
            Path(pack), manifest, names, threads=threads, progress=lambda m: click.echo(m, err=True)
        )
    except MsaError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    for mod, e in record["encoders"].items():
        b = e["best"]
        click.echo(
            f"tune: {mod}: fastest {b['file']} on {b['provider']} ({b['median_ms']:,.1f} ms)", err=True
        )
    click.echo(f"tune: wrote {path}", err=True)


def _main(
    inputs: tuple[str, ...],
    pack: str,
    text: str | None,
    transcript: str | None,
    fmt: str,
    *,
    stream: bool,
    window: float,
    hop: float,
    input_format: str | None,
    span: tuple[float, float | None],
    plot: Path | None,
    options: dict[str, Any],
) -> None:
    """Score ``inputs`` with an Analyzer made from ``options`` (its keyword arguments, from the
    command line); with ``plot``, draw the records into that file at the end."""
    if text is not None and transcript is not None:
        raise click.UsageError("give --text or --transcript, not both")
    names = expand_inputs(inputs)
    if inputs and not names:
        raise click.UsageError(f"no media files found in {', '.join(inputs)}")
    if not names and text is None:
        raise click.UsageError("give INPUT files or --text")
    an = _analyzer(pack, options)
    if stream:
        try:
            checks.window_hop(window, hop, fps=an.fps, names=("--window", "--hop"))
        except MsaError as exc:
            an.close()
            raise click.UsageError(str(exc)) from None
    out = open_writer(fmt, sys.stdout, live=stream, names=names, note=lambda m: click.echo(m, err=True))
    writer = out if plot is None else PlotTee(out, plot, lambda m: click.echo(m, err=True))
    failed = 0
    try:
        if not names:
            writer.write(prediction_record("(text)", an.predict(text=text)))
        for i, name in enumerate(names, 1):
            if len(names) > 1:
                click.echo(f"[{i}/{len(names)}] {shown(name)}", err=True)
            try:
                records = score_input(an, name, text, transcript, stream, window, hop, input_format, *span)
                for rec in records:
                    writer.write(rec)
            except OutputError:
                raise
            except Exception as exc:  # a batch keeps going past any bad input
                failed += 1
                label = shown(name)
                rec = failure_record(label, exc)
                msg = rec["error"]
                click.echo(f"error: {msg if label in msg else f'{label}: {msg}'}", err=True)
                writer.write(rec)
        writer.close()
    except OutputError as exc:
        _output_failed(exc)
    except MsaError as exc:  # text-only scoring with bad arguments
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except (KeyboardInterrupt, signals.Stopped):
        try:  # what was scored before the stop still reaches the output
            writer.close()
        except OutputError:
            pass  # the output went away too: the stop's own line and exit code still tell
        raise
    finally:
        an.close()
    if failed:
        click.echo(f"{failed} of {len(names)} inputs failed", err=True)
    if failed or (isinstance(writer, PlotTee) and writer.failed):
        sys.exit(1)


def _analyzer(pack: str, options: dict[str, Any]) -> Any:
    """The Analyzer ``msa-run`` scores with (exit 2 when the pack or options are wrong), with a
    note when it runs on another provider than the CPU or follows a tuning record."""
    from msa_runtime.analyzer import Analyzer

    try:
        an = Analyzer(pack, **options)
    except MsaError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if (an.auto_provider and an.providers[0] != "CPUExecutionProvider") or "tuning record" in an.choice:
        click.echo(f"note: {an.choice}", err=True)
    return an


def _output_failed(exc: OutputError) -> None:
    """End after the output could not be written: quietly with 141 (as SIGPIPE would) when the
    reader went away (``| head -1``), else with one line naming the output, not an input."""
    try:  # nothing more may reach the closed/full stdout, not even Python's exit-time flush
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    if exc.broken_pipe:
        sys.exit(141)
    click.echo(
        f"error: cannot write the results to standard output ({exc}): free space or check it", err=True
    )
    sys.exit(74)


if __name__ == "__main__":
    main()
