"""The model-building commands of `mirsearch`: train, train-default and evaluate."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import click

from mirsearch.cli.common import PATHS, Number, Whole, emit, load_settings
from mirsearch.config import TrainConfig


def _finite(ctx, param, value: float) -> float:
    if not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number")
    return value


def _writable(path: Path, *, option: str, folder: bool = False) -> Path:
    """`path` (a file, or with `folder` a folder) checked before the work (decoding, training:
    minutes to hours) that ends by writing there: nothing of the other kind in its way, and
    under a folder that can be made and written to."""
    if path.exists() and path.is_dir() != folder:
        kind = "a file" if folder else "a folder"
        raise click.BadParameter(f"{path} is {kind}", param_hint=option)
    existing = path if folder and path.is_dir() else path.parent
    while not existing.exists():
        existing = existing.parent
    try:
        with tempfile.TemporaryFile(dir=existing):  # what can be written there, tried
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise click.BadParameter(
            f"cannot write in {existing} ({reason})", param_hint=option
        ) from exc
    return path


def _refuse_network_options(ctx: click.Context) -> None:
    """A usage error for options of a whole network's training given with --head, which fits a
    head by its own fixed recipe (heads.HeadConfig): they had been ignored without a word."""
    given = [
        f"--{name.replace('_', '-')}"
        for name in (*TrainConfig.__dataclass_fields__, "unlabelled", "log_dir")
        if name in ctx.params
        and ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
    ]
    if given:
        raise click.UsageError(
            f"{', '.join(given)}: for training a whole network, not with --head (a head is fitted "
            "on the shipped network's embedding by a fixed recipe)"
        )


def _train_options(f):
    d = TrainConfig()
    options = [
        click.option(
            "--arch",
            type=click.Choice(["cnn", "crnn"]),
            default=d.arch,
            show_default=True,
            help="Network architecture.",
        ),
        click.option(
            "--optimizer",
            type=click.Choice(["adamw", "sgd"]),
            default=d.optimizer,
            show_default=True,
            help="AdamW, or SGD with Nesterov momentum.",
        ),
        click.option(
            "--lr",
            type=Number(min=0, min_open=True),
            callback=_finite,
            default=d.lr,
            show_default=True,
            help="Peak learning rate.",
        ),
        click.option(
            "--weight-decay",
            type=Number(min=0),
            callback=_finite,
            default=d.weight_decay,
            show_default=True,
            help="Weight decay (L2).",
        ),
        click.option(
            "--dropout",
            type=Number(0, 1),
            default=d.dropout,
            show_default=True,
            help="Dropout before the genre head.",
        ),
        click.option("--epochs", type=Whole(1), default=d.epochs, show_default=True),
        click.option(
            "--steps-per-epoch",
            type=Whole(1),
            default=d.steps_per_epoch,
            show_default=True,
        ),
        click.option("--batch-size", type=Whole(2), default=d.batch_size, show_default=True),
        click.option(
            "--window-s",
            type=Number(1.0, 10.0),
            default=d.window_s,
            show_default=True,
            help="Window length in seconds.",
        ),
        click.option("--seed", type=Whole(0, 2**32 - 1), default=d.seed, show_default=True),
        click.option(
            "--unlabelled",
            type=PATHS,
            default=None,
            help="A folder of unlabelled music for the invariance objective "
            "(../shared/audio: the packages the shipped model uses).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _train_config(options: dict):
    keys = (
        "arch",
        "optimizer",
        "lr",
        "weight_decay",
        "dropout",
        "epochs",
        "steps_per_epoch",
        "batch_size",
        "window_s",
        "seed",
    )
    return TrainConfig(**{k: options[k] for k in keys})


def _unlabelled(folder: Path | None) -> list[Path]:
    """Audio files of `folder`; for ../shared/audio, the packages the shipped recipe uses."""
    if folder is None:
        return []
    from mirsearch.datasets import contrastive_files
    from mirsearch.files import discover

    return contrastive_files(folder) or discover([folder])


@click.command()
@click.argument("data", type=click.Path(exists=True, path_type=Path))
@_train_options
@click.option(
    "--head",
    is_flag=True,
    help="Train only a genre head on the shipped network's frozen embedding (seconds, not "
    "hours): the checkpoint keeps the shipped vectors, tags and near-duplicate matching.",
)
@click.option(
    "--out",
    type=PATHS,
    default=Path("var/models/genre_cnn.pt"),
    show_default=True,
    help="Where to write the checkpoint (use it with MIRSEARCH_MODEL=...).",
)
@click.option(
    "--log-dir", type=PATHS, default=Path("runs/train"), show_default=True, help="TensorBoard logs."
)
def train(data: Path, head: bool, out: Path, log_dir: Path, unlabelled, **options) -> None:
    """Train a genre network on DATA: a folder per genre, or a TSV with path and class columns."""
    from mirsearch.datasets import decode_clips, read_dataset
    from mirsearch.heads import train_head
    from mirsearch.model_card import default_checkpoint_path
    from mirsearch.training import train as run_training

    model = load_settings().model_path  # None: the shipped one
    _writable(out, option="--out")
    if not head:  # where the logs go, tried first too (a file there had been said after decoding)
        _writable(log_dir, option="--log-dir", folder=True)
    if out.resolve() == (model or default_checkpoint_path()).resolve():
        raise click.BadParameter(
            f"{out} is the model in use (MIRSEARCH_MODEL, or the shipped one): a catalog indexed "
            "with it could no longer be read; write the new one elsewhere",
            param_hint="--out",
        )
    if head:
        _refuse_network_options(click.get_current_context())
    clips = read_dataset(data)
    if head:
        clips, signals = decode_clips(clips, sample_rate=load_settings().audio.sample_rate)
        path, accuracy = train_head(clips, signals, out=out, base=model)
        click.echo(f"training accuracy {accuracy:.3f}; checkpoint: {path}")
        return
    try:
        result = run_training(
            clips,
            _train_config(options),
            out=out,
            unlabelled_paths=_unlabelled(unlabelled),
            log_dir=log_dir,
        )
    except KeyboardInterrupt:  # click says "Aborted!" after this, and had said only that
        click.echo(f"interrupted: no checkpoint written; {out} is as it was", err=True)
        raise
    click.echo(
        f"validation accuracy {result.val_accuracy:.3f} (loss {result.best_val_loss:.3f}); "
        f"checkpoint: {out}"
    )


@click.command("train-default")
@click.argument("shared", type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=PATHS, default=None, help="Default: the packaged checkpoint.")
@click.option(
    "--music",
    type=PATHS,
    default=Path("var/training_music"),
    show_default=True,
    help="Fetched training music (scripts/fetch_training_music.py) for the distillation.",
)
@click.option(
    "--matcher",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Reuse this checkpoint's matching branch instead of training one (stage 1): a 'cnn' "
    "checkpoint, or a student such as the shipped one (its tags taught again, its duplicate "
    "threshold kept).",
)
@click.option(
    "--cache",
    type=PATHS,
    default=Path("var/teacher_cache"),
    show_default=True,
    help="Where the teachers' outputs are cached between runs.",
)
def train_default(
    shared: Path, out: Path | None, music: Path, matcher: Path | None, cache: Path
) -> None:
    """Retrain the shipped model: the matching branch on ../shared (stage 1, ~45 min), then the
    tagging branch distilled from the musicnn teachers on real music (stage 2)."""
    from mirsearch.checkpoints import load_checkpoint
    from mirsearch.distillation import distill
    from mirsearch.model_card import default_checkpoint_path
    from mirsearch.teaching import default_training_files
    from mirsearch.training import train_default_model

    out = out or default_checkpoint_path()
    if matcher is None:
        packaged = out == default_checkpoint_path()
        matcher = Path("var/models/matcher.pt") if packaged else out.with_name("matcher.pt")
        result = train_default_model(shared, matcher)
        click.echo(f"matching branch: validation accuracy {result.val_accuracy:.3f}")
    history = distill(
        default_training_files(shared, music),
        load_checkpoint(matcher),
        out=out,
        cache_dir=cache,
    )
    best = min(history, key=lambda row: row["val_loss"])
    click.echo(f"tagging branch: best epoch {best['epoch']} (val loss {best['val_loss']:.4f})")
    click.echo(f"checkpoint: {out}")


@click.command()
@click.argument("data", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--folds",
    type=Whole(0, 20),
    default=5,
    show_default=True,
    help="Cross-validation folds (at least 2); 0 runs the --heldout split alone.",
)
@click.option(
    "--heldout",
    default=None,
    metavar="COLUMN=VALUE",
    help="Also test on the manifest rows with COLUMN=VALUE, trained on the rest.",
)
@click.option(
    "--methods",
    default="cnn,head,baseline",
    show_default=True,
    help="Comma-separated: cnn (a network trained per fold), head (a head on the shipped "
    "frozen embedding), baseline (MFCC statistics + logistic regression).",
)
@_train_options
@click.option(
    "--out-dir",
    type=PATHS,
    default=Path("bench"),
    show_default=True,
    help="Where the confusion matrix PNG and per-class JSON go.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def evaluate(
    data: Path,
    folds: int,
    heldout: str | None,
    methods: str,
    out_dir: Path,
    as_json: bool,
    unlabelled,
    **options,
) -> None:
    """Cross-validate genre classifiers (a trained network, a head on the shipped embedding, an
    MFCC baseline) on the same grouped folds."""
    from mirsearch.datasets import read_dataset
    from mirsearch.evaluation import evaluate as run_evaluation

    _writable(out_dir, option="--out-dir", folder=True)
    split = None
    if heldout:
        column, _, value = heldout.partition("=")
        if not value:
            raise click.BadParameter("use COLUMN=VALUE", param_hint="--heldout")
        split = (column, value)
    report = run_evaluation(
        read_dataset(data),
        folds=folds,
        config=_train_config(options),
        unlabelled_paths=_unlabelled(unlabelled),
        heldout=split,
        out_dir=out_dir,
        methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
    )
    if as_json:
        emit(report)
        return
    for method, cv in report.get("cv", {}).items():
        click.echo(
            f"{method:9s} " + "  ".join(f"{m} {cv[m]['mean']:.3f} ± {cv[m]['std']:.3f}" for m in cv)
        )
    if "heldout" in report:
        h = report["heldout"]
        accuracies = ", ".join(
            f"{m} {h[m]['accuracy']:.3f}" for m in h if m not in ("column", "value")
        )
        click.echo(f"held out {h['column']}={h['value']}: {accuracies}")
