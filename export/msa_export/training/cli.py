"""``msa-train``: a thin shell over :func:`msa_export.training.run.train`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import click

from msa_export.console import fail_cleanly, stderr_progress
from msa_export.presets.kinds import head_kinds


class RegistryChoice(click.Choice):
    """A choice among the names a registry holds when the command runs (kinds registered after
    import included)."""

    def __init__(self, names: Callable[[], Sequence[str]]) -> None:
        self._names = names
        super().__init__(list(names()))

    @property  # type: ignore[override]
    def choices(self) -> Sequence[str]:
        return tuple(self._names())

    @choices.setter
    def choices(self, value: Sequence[str]) -> None:  # click.Choice.__init__ sets it
        pass


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--dataset",
    required=True,
    type=click.Path(),
    help="MMSA folder (label.csv + Raw/), a MOSI-style label.csv, or a CSV manifest.",
)
@click.option("--preset", required=True, help="Preset name or .toml card (see msa-export --list-presets).")
@click.option("--out", required=True, type=click.Path(), help="Output folder for head.pt and the report.")
@click.option(
    "--modalities",
    default=None,
    help="Comma-separated subset of text,audio,vision (default: what the preset and the dataset have).",
)
@click.option(
    "--head",
    "head",
    type=RegistryChoice(head_kinds),
    default="gated",
    show_default=True,
    help="Fusion head kind (registered in msa_export.presets.kinds).",
)
@click.option(
    "--layers",
    default="best",
    show_default=True,
    help="best (the preset's), sweep, weighted, or text=N,audio=N,vision=N.",
)
@click.option("--seeds", default=5, show_default=True, help="Seeds to train and average.")
@click.option(
    "--sweep-folds",
    default=5,
    show_default=True,
    help="--layers sweep: score each layer by k-fold cross-validation (k >= 3) over train+dev, folds by "
    "video (0: on the dev split). The preset's layer is kept unless another is clearly better.",
)
@click.option(
    "--sweep-seeds",
    type=int,
    default=None,
    help="--layers sweep: seeds per fold (default 1), or per layer with --sweep-folds 0 (default 3).",
)
@click.option("--epochs", default=50, show_default=True)
@click.option(
    "--lr",
    default=1e-4,
    show_default=True,
    help="Adam learning rate (the paper's 1e-4; small datasets learn faster with 1e-3).",
)
@click.option(
    "--cache",
    "cache",
    type=click.Path(),
    default=None,
    help="Feature cache folder (default: MSA_EDGE_CACHE, else ~/.cache/msa-edge/features).",
)
@click.option(
    "--finetune",
    "finetune",
    multiple=True,
    metavar="MODALITY=K",
    help="Train the last K kept blocks of that encoder with the head (K=0: frozen, the default); "
    "head.pt then holds them and msa-export --head exports them.",
)
@click.option(
    "--finetune-lr", default=5e-5, show_default=True, help="--finetune: the top tuned block's learning rate."
)
@click.option(
    "--finetune-decay",
    default=1.0,
    show_default=True,
    help="--finetune: layer-wise decay, each tuned block below the top gets this factor more.",
)
@click.option(
    "--finetune-epochs",
    default=20,
    show_default=True,
    help="--finetune: at most this many epochs (the head at learning rate 1e-3) ...",
)
@click.option(
    "--patience",
    default=4,
    show_default=True,
    help="--finetune: ... stopping after this many without a better dev MAE.",
)
@click.option("--random-weights", is_flag=True, help="Encoders with seeded random weights.")
@click.option("--offline", is_flag=True, default=None, help="Use only local files and the hub cache.")
@fail_cleanly
def main(
    dataset: str,
    preset: str,
    out: str,
    modalities: str | None,
    head: str,
    layers: str,
    seeds: int,
    sweep_folds: int,
    sweep_seeds: int | None,
    epochs: int,
    lr: float,
    cache: str | None,
    finetune: tuple[str, ...],
    finetune_lr: float,
    finetune_decay: float,
    finetune_epochs: int,
    patience: int,
    random_weights: bool,
    offline: bool | None,
) -> None:
    """Cache encoder features, sweep layers, train a fusion head, report MOSI/MOSEI metrics."""
    from msa_export.presets.registry import get_preset
    from msa_export.training.finetune import FineTuneOptions, check_options, parse_finetune
    from msa_export.training.run import train

    tune = parse_finetune(finetune)
    opts = FineTuneOptions(lr=finetune_lr, decay=finetune_decay, epochs=finetune_epochs, patience=patience)
    check_options(opts)
    chosen = get_preset(preset)
    if random_weights:
        chosen = chosen.with_random_weights()
    mods = [m.strip() for m in modalities.split(",")] if modalities else None
    progress = stderr_progress()

    metrics = train(
        dataset,
        chosen,
        out,
        modalities=mods,
        head=head,
        layers=layers,
        seeds=seeds,
        epochs=epochs,
        lr=lr,
        cache_dir=cache,
        offline=offline,
        sweep_seeds=sweep_seeds,
        sweep_folds=sweep_folds,
        finetune=tune,
        finetune_opts=opts,
        progress=progress,
    )
    s = metrics["summary"]
    click.echo(
        f"test MAE {s['mae']['mean']:.3f} ± {s['mae']['std']:.3f}, Corr "
        f"{s['corr']['mean']:.3f} ± {s['corr']['std']:.3f}, Acc-2 (non-0) "
        f"{100 * s['acc2_non0']['mean']:.1f}; layers {metrics['layers']}; report: {out}/report.md"
    )


if __name__ == "__main__":
    main()
