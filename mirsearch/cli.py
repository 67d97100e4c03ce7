"""The `mirsearch` command: the only place that parses arguments or prints."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import click

from mirsearch.config import Settings
from mirsearch.errors import MirsearchError

log = logging.getLogger(__name__)

PATHS = click.Path(exists=False, path_type=Path)


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ValueError as exc:  # a bad MIRSEARCH_* variable
        raise click.UsageError(str(exc)) from exc


def _engine():
    from mirsearch.api import Engine

    return Engine(_settings())


def _emit(obj: dict) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False))


def _per_query(
    queries: Iterable, run: Callable, show: Callable, *, as_json: bool, key: str
) -> None:
    """Run `run` on each query; one line (or block) per query; a failure doesn't stop the rest."""
    ok = failed = 0
    for query in queries:
        try:
            payload = run(query)
        except MirsearchError as exc:
            failed += 1
            if as_json:
                _emit({key: str(query), "error": str(exc)})
            else:
                click.echo(f"{query}: error: {exc}", err=True)
            continue
        ok += 1
        if as_json:
            _emit({key: str(query), **payload})
        else:
            show(query, payload)
    if ok == 0 and failed:
        sys.exit(1)


def _show_results(query, payload: dict) -> None:
    click.echo(f"{query}")
    results = payload.get("results") or payload.get("similar") or []
    for rank, r in enumerate(results, 1):
        name = r["title"] or Path(r["path"]).name
        genre = f"  [{r['genre']}]" if r.get("genre") else ""
        click.echo(f"  {rank:2d}. {r['score']:.3f}  {name} @ {r['offset_s']:.1f}s{genre}")
    if not results:
        click.echo("  (no results)")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """mirsearch: content-based music search, genre classification and near-duplicate detection."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


@main.command()
@click.argument("paths", nargs=-1, required=True, type=PATHS)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Processes decoding and embedding in parallel [default: one per core].",
)
@click.option(
    "--engine",
    "run_on",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="Where the workers run: local processes, or Ray tasks (pip install 'mirsearch[ray]').",
)
@click.option(
    "--address",
    default=None,
    help="Ray cluster to join (e.g. auto, ray://head:10001); default: a local Ray.",
)
@click.option("--prune", is_flag=True, help="Remove catalog rows whose files are gone.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON line.")
def index(
    paths: tuple[Path, ...],
    workers: int | None,
    run_on: str,
    address: str | None,
    prune: bool,
    as_json: bool,
) -> None:
    """Index folders of audio into the catalog and the vector index (incremental)."""
    if address and run_on != "ray":
        raise click.UsageError("--address goes with --engine ray")
    from tqdm import tqdm

    engine = _engine()
    bar = tqdm(unit="file", disable=None, file=sys.stderr)
    try:
        summary = engine.index_paths(
            paths,
            workers=workers,
            engine=run_on,
            address=address,
            prune=prune,
            progress=bar.update,
            on_total=lambda n: setattr(bar, "total", n) or bar.refresh(),
        )
    except MirsearchError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        bar.close()
    data = summary.to_dict()
    if as_json:
        _emit(data)
    else:
        click.echo(
            "indexed {indexed}, unchanged {unchanged}, failed {failed}, removed {removed}, "
            "duplicates {duplicates} in {seconds:.1f} s ({audio_hours:.2f} h of audio)".format(
                **data
            )
        )
    if data["failed"] and not (data["indexed"] or data["unchanged"]):
        sys.exit(1)


def _genre_option(f):
    return click.option(
        "--genre", "genres", multiple=True, help="Only tracks of this genre (repeatable)."
    )(f)


def _k_option(f):
    return click.option("--k", type=int, default=10, show_default=True, help="How many results.")(f)


@main.command("search")
@click.argument("clips", nargs=-1, required=True, type=PATHS)
@_k_option
@_genre_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per clip per line.")
def search_cmd(clips, k: int, genres: tuple[str, ...], as_json: bool) -> None:
    """Find the catalog songs that sound most like each clip."""
    engine = _engine()

    def run(clip):
        return {"results": [r.to_dict() for r in engine.search(clip, k=k, genres=genres)]}

    _per_query(clips, run, _show_results, as_json=as_json, key="query")


@main.command()
@click.argument("track_id", type=int)
@_k_option
@_genre_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def similar(track_id: int, k: int, genres: tuple[str, ...], as_json: bool) -> None:
    """More like this: catalog songs that sound like a catalog track."""
    engine = _engine()

    def run(tid):
        return {"results": [r.to_dict() for r in engine.similar(tid, k=k, genres=genres)]}

    _per_query([track_id], run, _show_results, as_json=as_json, key="track_id")


@main.command()
@click.argument("clips", nargs=-1, required=True, type=PATHS)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per clip per line.")
def match(clips, as_json: bool) -> None:
    """Which catalog tracks each upload contains (near-duplicates: re-encodes, crops, edits)."""
    engine = _engine()

    def run(clip):
        return {"matches": [m.to_dict() for m in engine.match(clip)]}

    def show(clip, payload):
        click.echo(f"{clip}")
        for m in payload["matches"]:
            click.echo(
                f"  DUPLICATE of {m['title'] or Path(m['path']).name} (track {m['track_id']}): "
                f"score {m['score']:.2f}, upload {m['query_offset_s']:.1f}s = track "
                f"{m['track_offset_s']:.1f}s for {m['duration_s']:.1f}s, speed {m['speed']:.3f}"
            )
        if not payload["matches"]:
            click.echo("  no catalog track found in it")

    _per_query(clips, run, show, as_json=as_json, key="query")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def dupes(as_json: bool) -> None:
    """Report every near-duplicate group in the catalog, with its evidence."""
    try:
        groups = _engine().dupes()
    except MirsearchError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        _emit({"groups": groups})
        return
    for n, group in enumerate(groups, 1):
        names = ", ".join(
            f"{t['track_id']}:{t['title'] or Path(t['path']).name} (speed {t['speed']:g})"
            for t in group["tracks"]
        )
        click.echo(f"group {n}: {names}")
    click.echo(f"{len(groups)} near-duplicate groups")


@main.command()
@click.argument("files", nargs=-1, required=True, type=PATHS)
@click.option("--timeline", is_flag=True, help="Also the genre of every window.")
@click.option(
    "--similar",
    "similar_k",
    type=click.IntRange(0, 100),
    default=5,
    show_default=True,
    help="How many similar catalog tracks to list (0: none).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file per line.")
def classify(files, timeline: bool, similar_k: int, as_json: bool) -> None:
    """Genre probabilities and tags of each file, and the most similar catalog tracks."""
    engine = _engine()

    def run(path):
        return engine.classify(path, similar_k=similar_k, timeline=timeline).to_dict()

    def show(path, payload):
        top = sorted(payload["probabilities"].items(), key=lambda kv: -kv[1])[:3]
        click.echo(
            f"{path}: {payload['genre']}  (" + ", ".join(f"{g} {p:.2f}" for g, p in top) + ")"
        )
        if payload["tags"]:
            click.echo(
                "  tags: " + ", ".join(f"{t['tag']} {t['score']:.2f}" for t in payload["tags"])
            )
        for w in payload.get("timeline", []):
            click.echo(f"  {w['offset_s']:7.1f}s {w['genre']} {w['probability']:.2f}")
        for r in payload["similar"]:
            click.echo(f"  similar: {r['score']:.3f} {r['title'] or Path(r['path']).name}")

    _per_query(files, run, show, as_json=as_json, key="query")


@main.command()
@click.option("--q", default=None, help="Text in title, artist or path.")
@click.option("--genre", default=None, help="Only this genre.")
@click.option(
    "--status",
    default="indexed",
    show_default=True,
    type=click.Choice(["indexed", "failed", "pending", "all"]),
)
@click.option("--page", type=click.IntRange(1), default=1, show_default=True)
@click.option("--per-page", type=click.IntRange(1, 10_000), default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per track per line.")
def tracks(q, genre, status, page, per_page, as_json: bool) -> None:
    """List the catalog."""
    engine = _engine()
    rows, total = engine.catalog.list_tracks(
        q=q, genre=genre, status=None if status == "all" else status, page=page, per_page=per_page
    )
    for row in rows:
        if as_json:
            _emit(row.to_dict())
        else:
            extra = f"  error: {row.error}" if row.error else ""
            click.echo(
                f"{row.id:6d}  {row.status:8s} {row.duration_s or 0:7.1f}s  "
                f"{(row.genre or '-'):12s} {row.title or Path(row.path).name}{extra}"
            )
    if not as_json:
        click.echo(f"{len(rows)} of {total} tracks")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per genre per line.")
def genres(as_json: bool) -> None:
    """List the genres in the catalog (predicted and from tags) with track counts."""
    for genre, count in _engine().catalog.genres():
        if as_json:
            _emit({"genre": genre, "count": count})
        else:
            click.echo(f"{count:6d}  {genre}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def stats(as_json: bool) -> None:
    """Summarise the catalog: tracks by status, hours of audio, genres, index generation."""
    data = _engine().catalog.stats()
    if as_json:
        _emit(data)
        return
    for key, value in data.items():
        click.echo(f"{key}: {value}")


def _train_options(f):
    from mirsearch.training import TrainConfig

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
            type=click.FloatRange(min=0, min_open=True),
            default=d.lr,
            show_default=True,
            help="Peak learning rate.",
        ),
        click.option(
            "--weight-decay",
            type=click.FloatRange(min=0),
            default=d.weight_decay,
            show_default=True,
            help="Weight decay (L2).",
        ),
        click.option(
            "--dropout",
            type=click.FloatRange(0, 1),
            default=d.dropout,
            show_default=True,
            help="Dropout before the genre head.",
        ),
        click.option("--epochs", type=click.IntRange(1), default=d.epochs, show_default=True),
        click.option(
            "--steps-per-epoch",
            type=click.IntRange(1),
            default=d.steps_per_epoch,
            show_default=True,
        ),
        click.option(
            "--batch-size", type=click.IntRange(2), default=d.batch_size, show_default=True
        ),
        click.option(
            "--window-s",
            type=click.FloatRange(1.0, 10.0),
            default=d.window_s,
            show_default=True,
            help="Window length in seconds.",
        ),
        click.option("--seed", type=int, default=d.seed, show_default=True),
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
    from mirsearch.training import TrainConfig

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
    from mirsearch.indexer import discover

    return contrastive_files(folder) or discover([folder])


@main.command()
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
    from mirsearch.datasets import decode_all, read_dataset
    from mirsearch.heads import train_head
    from mirsearch.training import train as run_training

    try:
        clips = read_dataset(data)
        if head:
            signals = decode_all([c.path for c in clips], sample_rate=_settings().audio.sample_rate)
            path, accuracy = train_head(clips, signals, out=out, base=_settings().model_path)
            click.echo(f"training accuracy {accuracy:.3f}; checkpoint: {path}")
            return
        result = run_training(
            clips,
            _train_config(options),
            out=out,
            unlabelled_paths=_unlabelled(unlabelled),
            log_dir=log_dir,
        )
    except MirsearchError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"validation accuracy {result.val_accuracy:.3f} (loss {result.best_val_loss:.3f}); "
        f"checkpoint: {out}"
    )


@main.command("train-default")
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
    help="Reuse this checkpoint's matching branch instead of training one (stage 1).",
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
    from mirsearch.checkpoints import default_checkpoint_path, load_checkpoint
    from mirsearch.distillation import default_training_files, distill
    from mirsearch.training import train_default_model

    out = out or default_checkpoint_path()
    try:
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
    except MirsearchError as exc:
        raise click.ClickException(str(exc)) from exc
    best = min(history, key=lambda row: row["val_loss"])
    click.echo(f"tagging branch: best epoch {best['epoch']} (val loss {best['val_loss']:.4f})")
    click.echo(f"checkpoint: {out}")


@main.command()
@click.argument("data", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--folds",
    type=click.IntRange(0, 20),
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

    split = None
    if heldout:
        column, _, value = heldout.partition("=")
        if not value:
            raise click.BadParameter("use COLUMN=VALUE", param_hint="--heldout")
        split = (column, value)
    try:
        report = run_evaluation(
            read_dataset(data),
            folds=folds,
            config=_train_config(options),
            unlabelled_paths=_unlabelled(unlabelled),
            heldout=split,
            out_dir=out_dir,
            methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
        )
    except MirsearchError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        _emit(report)
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


@main.group()
def db() -> None:
    """Database schema migrations (applied automatically on first use)."""


@db.command()
def upgrade() -> None:
    """Apply every pending migration."""
    from mirsearch.catalog import Catalog

    Catalog(_settings().db_url).upgrade()
    click.echo("database is at the newest schema")


@db.command()
@click.argument("revision", default="base")
def downgrade(revision: str) -> None:
    """Revert migrations down to REVISION (default: an empty database)."""
    from mirsearch.catalog import Catalog

    Catalog(_settings().db_url).downgrade(revision)
    click.echo(f"database downgraded to {revision}")


@main.command()
@click.argument("directory", type=PATHS)
@click.option("--tracks", "n_tracks", type=click.IntRange(1, 100), default=8, show_default=True)
def demo(directory: Path, n_tracks: int) -> None:
    """Write a small demo catalog of synthetic music (used when ../shared/audio is absent)."""
    from mirsearch.demo import write_demo_catalog

    for path in write_demo_catalog(directory, n_tracks=n_tracks):
        click.echo(path)


@main.command()
@click.option("--host", default=None, help="Address to bind (default 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port (default 8000).")
def serve(host: str | None, port: int | None) -> None:
    """Serve the web site and JSON API with waitress."""
    from waitress import serve as waitress_serve

    from web import create_app

    settings = _settings()
    host = host or settings.server.host
    port = port or settings.server.port
    click.echo(f"serving on http://{host}:{port}", err=True)
    waitress_serve(create_app(), host=host, port=port, threads=settings.server.threads)
