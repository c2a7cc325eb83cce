"""``msa-export``: a thin shell over :func:`msa_export.pack.build.build_pack` and the preset registry."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

from msa_export.console import fail_cleanly, stderr_progress

if TYPE_CHECKING:
    from msa_export.pack.report import BuildReport


def parse_assignments(values: Sequence[str], option: str, cast: Callable[[str], Any] = str) -> dict[str, Any]:
    """``("text=19", "audio=20")`` -> ``{"text": 19, "audio": 20}``; bad items are usage errors."""
    out: dict[str, Any] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or key not in ("text", "audio", "vision") or not value:
            raise click.BadParameter(
                f"{item!r}: expected MODALITY=VALUE with MODALITY one of text, audio, vision",
                param_hint=option,
            )
        try:
            out[key] = cast(value)
        except ValueError:
            raise click.BadParameter(f"{item!r}: {value!r} is not valid", param_hint=option) from None
    return out


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


def _echo_presets() -> None:
    from msa_export.presets import registry

    for name, p in registry.list_presets().items():
        cut = ", ".join(f"{m} {c.kind}@{c.layer}" for m, c in p.encoders.items())
        click.echo(f"{name:16s} {cut:40s} {p.description}")


def _echo_report(report: BuildReport) -> None:
    """The table of written files, the int8 notes and where the pack went."""
    width = max(len(r.file) for r in report.rows)
    click.echo(f"\n{'file':{width}s}  {'precision':9s}  {'size':>9s}  parity with PyTorch")
    for r in report.rows:
        click.echo(f"{r.file:{width}s}  {r.precision:9s}  {_size(r.bytes):>9s}  {r.parity}")
    for note in report.notes:
        click.echo(f"int8: {note}")
    for note in report.left_out:
        click.echo(f"note: {note}", err=True)
    click.echo(f"\npack written to {report.out} in {report.seconds:.1f} s")


def _tune(report: BuildReport, progress: Callable[[str], None]) -> None:
    """Time every file of the new pack on this machine's providers (``--tune``)."""
    from msa_runtime.engine.sessions import engines_to_tune
    from msa_runtime.loading.tuning import tune as tune_pack
    from msa_runtime.pack import load_manifest

    names = engines_to_tune("auto")
    path, record = tune_pack(report.out, load_manifest(report.out), names, progress=progress)
    for mod, e in record["encoders"].items():
        click.echo(
            f"tuned: {mod}: fastest {e['best']['file']} on {e['best']['provider']} "
            f"({e['best']['median_ms']:,.1f} ms)"
        )
    click.echo(f"tuning record written to {path}")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--preset", help="Preset name (see --list-presets) or path of a .toml card.")
@click.option("--out", type=click.Path(), help="Pack folder to create.")
@click.option("--head", "head", type=click.Path(), help="Trained head checkpoint (msa-train).")
@click.option(
    "--precision",
    default=None,
    help="Comma-separated precisions to write: int8 (CPU EP, dynamic), fp16 (CUDA), "
    "fp32, ov-int8 (OpenVINO, NNCF static). Default: int8,fp16,fp32, plus ov-int8 "
    "where NNCF is installed and an OpenVINO route offers this CPU (else a note says why).",
)
@click.option(
    "--calibrate",
    type=click.Path(),
    default=None,
    metavar="DIR_OR_CSV",
    help="Calibration clips for the ov-int8 file: a folder of clips (with transcript "
    "sidecars) or a dataset CSV. Default: the --head run's training clips, else "
    "synthetic inputs.",
)
@click.option(
    "--tune",
    is_flag=True,
    help="After export, time every file on this machine's "
    "providers and write <out>.tuning.json beside the pack (see msa-run --tune).",
)
@click.option(
    "--layer",
    "layers",
    multiple=True,
    metavar="MODALITY=N",
    help="Cut an encoder after block N (0-based), e.g. --layer text=19.",
)
@click.option(
    "--source",
    "sources",
    multiple=True,
    metavar="MODALITY=ID",
    help="Load an encoder from another hub id or local folder.",
)
@click.option(
    "--random-weights",
    is_flag=True,
    help="Build every encoder from its config with seeded random weights (tests).",
)
@click.option(
    "--exporter",
    type=click.Choice(["torchscript", "dynamo"]),
    default="torchscript",
    show_default=True,
    help="torch.onnx exporter.",
)
@click.option(
    "--offline",
    is_flag=True,
    default=None,
    help="Use only local files and the hub cache (default: HF_HUB_OFFLINE).",
)
@click.option(
    "--gate-text",
    type=click.Path(),
    default=None,
    metavar="DATASET_OR_TXT",
    help="Utterances to validate the text encoder on: a dataset (label.csv, manifest; "
    "dev split first) or a .txt file, one per line (default: the checkpoint's dev "
    "utterances, else built-in sentences).",
)
@click.option(
    "--asr",
    help="Also copy a speech-recognition model into the pack (a Whisper "
    "size, a CTranslate2 hub id or folder; needs msa-edge[asr]).",
)
@click.option("--force", is_flag=True, help="Replace an existing pack at --out.")
@click.option("--list-presets", is_flag=True, help="List the presets and exit.")
@fail_cleanly
def main(
    preset: str | None,
    out: str | None,
    head: str | None,
    precision: str | None,
    calibrate: str | None,
    tune: bool,
    layers: tuple[str, ...],
    sources: tuple[str, ...],
    random_weights: bool,
    exporter: str,
    offline: bool | None,
    gate_text: str | None,
    asr: str | None,
    force: bool,
    list_presets: bool,
) -> None:
    """Export encoders cut at their best layer, plus the fusion head, as a validated ONNX pack."""
    from msa_export.presets import registry

    if list_presets:
        _echo_presets()
        return
    if not preset or not out:
        raise click.UsageError("--preset and --out are required (or --list-presets)")
    chosen = registry.get_preset(preset)
    if random_weights:
        chosen = chosen.with_random_weights()
    chosen = chosen.with_sources(parse_assignments(sources, "--source"))
    layer_map = parse_assignments(layers, "--layer", int)
    precisions = None if precision is None else [p.strip() for p in precision.split(",") if p.strip()]
    from msa_export.pack.build import build_pack

    progress = stderr_progress()

    report = build_pack(
        chosen,
        out,
        head=head,
        precisions=precisions,
        layers=layer_map,
        force=force,
        offline=offline,
        exporter=exporter,
        calibrate=calibrate,
        gate_text=gate_text,
        asr=asr,
        progress=progress,
    )
    _echo_report(report)
    if tune:
        _tune(report, progress)
    if not report.trained_head:
        click.echo(
            "note: no --head given: the pack has a seeded, untrained fusion head; its "
            "scores are not meaningful until you export a trained one (msa-train)",
            err=True,
        )


if __name__ == "__main__":
    main()
