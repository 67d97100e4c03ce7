"""Olaf side by side: the landmark fingerprinter Olaf (JorenSix/Olaf, C) and mirsearch index the
same folder and answer the same seeded 10 s clips, each through its own command line, in one run.

Indexing: `mirsearch index FOLDER` with default settings (a fresh temporary home, one worker per
core) and `olaf store --threads <cores> FILES`, each timed from process start to exit after one
untimed run of each (`_warm_up`), so that neither starts from a cold page cache. Queries:
`mirsearch match --workers N` and `olaf query --threads N` over all the clips in one process each
(the start amortised over the batch), on every core (N = cores, both commands' way of using a
machine) and on one, each command and the processes it starts held to N CPUs, and how often
each names the clip's source file first, so that the two speeds compare answers of known
quality; then a long batch (LONG_BATCH other clips, every core), where the start is shared by
ten times as many queries, as when a platform checks a day's uploads.

All of it is measured in ROUNDS rounds, each into fresh homes, the two programs taking turns to
go first; the figures are the rounds' medians, and each ratio the median of the rounds' ratios.
On the shared machines here one program's speed moves by ±15 % from one minute to the next (Olaf
indexing at 426-501x real time in three runs of one afternoon): a single pair of runs can put
either ahead.

Olaf is built from source by `make olaf` (var/olaf/bin/olaf), or named by the OLAF variable. Its
command line decodes with `ffmpeg` and asks `ffprobe` for each file's duration, both found on
PATH: the system's where present, else imageio-ffmpeg's ffmpeg (`pip install -e '.[olaf]'`) and,
for ffprobe, a shell stand-in that reads the duration from ffmpeg's header. Olaf reads its config
from $HOME/.olaf/olaf_config.json and keeps its database under $HOME/.olaf/db: every run gets a
temporary HOME, so it starts from an empty database and leaves none behind.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from statistics import median

from latency import CLIP_S, excerpts

from mirsearch.files import discover

REPO = Path(__file__).resolve().parent.parent
BUILT = REPO / "var" / "olaf" / "bin" / "olaf"  # where `make olaf` installs it
NOT_BUILT = "Olaf not built: make olaf"
ROUNDS = 3  # interleaved rounds of both programs; the figures are their medians
ROW_FIELDS = 11  # query_index, total_queries, ..., reference_stop: a row cut by a header has more
LONG_BATCH = 300  # seeded 10 s clips in the long batch of queries

# Olaf runs `ffprobe -i FILE -show_entries format=duration -v quiet -of csv=p=0` and reads a
# number of seconds; ffmpeg prints the same figure ("Duration: 00:03:15.51,") when only probing.
FFPROBE_STAND_IN = """#!/bin/sh
ffmpeg -hide_banner -i "$2" 2>&1 | awk '/Duration:/ {
  split($2, t, ":"); sub(",", "", t[3]); print t[1] * 3600 + t[2] * 60 + t[3]; exit }'
"""


class Unavailable(Exception):
    """Olaf or a decoder for it cannot be had here; the message says how to get it."""


def olaf_binary(environ: dict[str, str] = os.environ) -> Path:
    """The Olaf executable: $OLAF, else var/olaf/bin/olaf; Unavailable if it is not there."""
    path = Path(environ["OLAF"]) if environ.get("OLAF") else BUILT
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise Unavailable(
            NOT_BUILT + (f" (OLAF={path} is not executable)" if "OLAF" in environ else "")
        )
    return path


def decoders(folder: Path) -> tuple[str, str]:
    """PATH for Olaf's runs, with `ffmpeg` and `ffprobe` on it, and where they come from."""
    system = os.environ.get("PATH", "")
    ffmpeg, ffprobe = shutil.which("ffmpeg"), shutil.which("ffprobe")
    if ffmpeg and ffprobe:
        return system, "the system's ffmpeg and ffprobe"
    folder.mkdir(parents=True, exist_ok=True)
    origin = "the system's ffmpeg"
    if not ffmpeg:
        try:
            import imageio_ffmpeg
        except ImportError as exc:
            raise Unavailable(
                "Olaf needs ffmpeg: pip install -e '.[olaf]' (imageio-ffmpeg) or install FFmpeg"
            ) from exc
        (folder / "ffmpeg").symlink_to(imageio_ffmpeg.get_ffmpeg_exe())
        origin = f"imageio-ffmpeg {imageio_ffmpeg.__version__}'s ffmpeg"
    probe = folder / "ffprobe"
    probe.write_text(FFPROBE_STAND_IN)
    probe.chmod(0o755)
    return f"{folder}{os.pathsep}{system}", origin + " and a shell stand-in for ffprobe"


@dataclass(frozen=True)
class Olaf:
    """One Olaf executable with its own HOME (config and database) and decoders on PATH."""

    binary: Path
    home: Path
    path: str

    def configure(self, extensions: list[str]) -> None:
        """Olaf's defaults, its database under this HOME, and every extension of the folder
        (its default list lacks .opus)."""
        config = {
            "db_folder": str(self.home / ".olaf" / "db"),
            "cache_folder": str(self.home / ".olaf" / "cache"),
            "allowed_audio_file_extensions": extensions,
        }
        (self.home / ".olaf").mkdir(parents=True, exist_ok=True)
        (self.home / ".olaf" / "olaf_config.json").write_text(json.dumps(config))

    def run(self, *args: str, cores: int | None = None) -> tuple[float, str]:
        """Wall seconds and standard output of `olaf ARGS` (on the first `cores` CPUs: `_timed`)."""
        env = os.environ | {"HOME": str(self.home), "PATH": self.path}
        return _timed([str(self.binary), *args], env, cores=cores)

    def db_bytes(self) -> int:
        return _bytes_under(self.home / ".olaf" / "db")


def _timed(
    command: list[str], env: dict[str, str], *, cores: int | None = None
) -> tuple[float, str]:
    """Wall seconds and standard output of `command`; with `cores`, it and every process it
    starts (mirsearch's workers, Olaf's ffmpeg decoders) run on that many of the CPUs this one
    may use and no others, whatever threads they start: `match --workers 1` had run a thread of
    NumPy's BLAS a core beside its one worker (1.6 CPUs busy over 60 clips)."""
    started = time.perf_counter()
    done = subprocess.run(
        command,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=None if cores is None else partial(_pin, cores),
    )
    return time.perf_counter() - started, done.stdout


def _pin(cores: int) -> None:
    """This process on the first `cores` of the CPUs it may run on (Linux)."""
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:cores])


def _bytes_under(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _mirsearch() -> list[str]:
    """The `mirsearch` command of this interpreter's environment."""
    script = Path(sys.executable).with_name("mirsearch")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from mirsearch.cli import run; run()"]


def store_and_query(files: list[Path], queries: list[Path], home: Path) -> str:
    """Olaf's store of `files` into a fresh database under `home`, then its query of `queries`
    in one batch, both on every core: its answers (CSV text, read by `olaf_top_paths` and
    `olaf_listed_paths`). Unavailable where Olaf or a decoder for it cannot be had."""
    binary = olaf_binary()
    path, _ = decoders(home / "bin")
    runner = Olaf(binary, home, path)
    runner.configure(sorted({f.suffix.lower() for f in [*files, *queries]}))
    cores = str(os.cpu_count() or 1)
    runner.run("store", "--threads", cores, *map(str, files))
    return runner.run("query", "--threads", cores, *map(str, queries))[1]


def olaf_top_paths(csv_text: str, n_queries: int) -> list[str | None]:
    """The reference path Olaf ranks first for each query (by match count), None for none.

    Olaf prints a header line per query, then `query_index, total, query_path, query_offset,
    match_count, query_start, query_stop, path, match_identifier, reference_start,
    reference_stop` rows; a query without a match has one row with an empty path. Its threads
    print unsynchronised: in a long batch a header can land in the middle of another query's
    row, which is skipped (it has more fields).
    """
    best: dict[int, tuple[int, str]] = {}
    for index, count, path in _matches(csv_text):
        if index not in best or count > best[index][0]:
            best[index] = (count, path)
    return [best[i][1] if i in best else None for i in range(1, n_queries + 1)]


def olaf_listed_paths(csv_text: str, n_queries: int) -> list[set[str]]:
    """Every reference path Olaf lists for each query (its rows, see `olaf_top_paths`)."""
    listed: list[set[str]] = [set() for _ in range(n_queries)]
    for index, _, path in _matches(csv_text):
        if 1 <= index <= n_queries:
            listed[index - 1].add(path)
    return listed


def _matches(csv_text: str) -> Iterator[tuple[int, int, str]]:
    """(query index, match count, reference path) of each whole row of Olaf's that names one."""
    for row in csv.reader(csv_text.splitlines(), skipinitialspace=True):
        if len(row) != ROW_FIELDS or not (row[0].strip().isdigit() and row[4].strip().isdigit()):
            continue
        if path := row[7].strip():
            yield int(row[0]), int(row[4]), path


def mirsearch_top_paths(json_lines: str) -> list[str | None]:
    """Each query's first match's path (None for none or an error), in the order of the queries,
    from `mirsearch match --json` (one line per query)."""
    found = []
    for line in json_lines.splitlines():
        matches = json.loads(line).get("matches") or []
        found.append(matches[0]["path"] if matches else None)
    return found


def _query(
    olaf: Olaf, env: dict[str, str], clips: list[str], *, cores: int, olaf_first: bool
) -> dict:
    """Both commands over all `clips` on `cores` cores: wall seconds and the path each names
    first for each clip."""
    runs = {
        "mirsearch": lambda: _timed(
            [*_mirsearch(), "match", "--json", "--workers", str(cores), *clips], env, cores=cores
        ),
        "olaf": lambda: olaf.run("query", "--threads", str(cores), *clips, cores=cores),
    }
    out = {}
    for name in sorted(runs, reverse=olaf_first):
        out[name] = runs[name]()
    (ours_s, matched), (olaf_s, answered) = out["mirsearch"], out["olaf"]
    return {
        "mirsearch": (ours_s, mirsearch_top_paths(matched)),
        "olaf": (olaf_s, olaf_top_paths(answered, len(clips))),
    }


def _hit_rate(found: list[str | None], sources: list[Path]) -> float:
    hits = [
        f is not None and Path(f).resolve() == s.resolve()
        for f, s in zip(found, sources, strict=True)
    ]
    return round(sum(hits) / len(hits), 3)


def _warm_up(files: list[Path], audio_dir: Path, home: Path, olaf: Olaf) -> None:
    """Both index the folder once, untimed, into homes of their own: the timed runs then start
    with their programs, libraries and the audio in the page cache, whatever ran before (make
    bench's scale benchmark writes gigabytes just before this one, and `import torch` takes
    3.5 s with its libraries read from disk against 1.7 s from the page cache)."""
    _timed([*_mirsearch(), "index", str(audio_dir)], os.environ | {"MIRSEARCH_HOME": str(home)})
    olaf.configure(sorted({f.suffix.lower() for f in files}))
    olaf.run("store", "--threads", str(os.cpu_count() or 1), *map(str, files))


@dataclass(frozen=True)
class Round:
    """One round's measurements: wall seconds of each program's indexing and of each batch of
    queries (by name: `Batch`), what each named first for each clip, and the stores' sizes."""

    index_s: dict[str, float]
    audio_s: float
    query: dict[str, dict[str, tuple[float, list[str | None]]]]
    footprint: dict[str, int]


@dataclass(frozen=True)
class Batch:
    """A batch of query clips, answered by one process of each program on `cores` cores."""

    cores: int
    clips: list[str]
    sources: list[Path]  # the file each clip was cut from


def _round(
    number: int, olaf: Olaf, files: list[Path], audio_dir: Path, home: Path, batches: dict
) -> Round:
    """Both programs index `audio_dir` into fresh homes and answer each of `batches` (name →
    Batch); Olaf goes first in the odd rounds."""
    workers = os.cpu_count() or 1
    olaf_first = number % 2 == 1
    env = os.environ | {"MIRSEARCH_HOME": str(home)}
    olaf.configure(sorted({f.suffix.lower() for f in files}))
    runs = {
        "mirsearch": lambda: _timed([*_mirsearch(), "index", "--json", str(audio_dir)], env),
        "olaf": lambda: olaf.run("store", "--threads", str(workers), *map(str, files)),
    }
    index = {name: runs[name]() for name in sorted(runs, reverse=olaf_first)}
    query = {
        name: _query(olaf, env, batch.clips, cores=batch.cores, olaf_first=olaf_first)
        for name, batch in batches.items()
    }
    return Round(
        index_s={name: seconds for name, (seconds, _) in index.items()},
        audio_s=json.loads(index["mirsearch"][1].splitlines()[-1])["audio_hours"] * 3600,
        query=query,
        footprint={"mirsearch_home_bytes": _bytes_under(home), "olaf_db_bytes": olaf.db_bytes()},
    )


def _index_figures(rounds: list[Round], workers: int) -> dict:
    audio_s = rounds[0].audio_s
    speed = {name: [r.audio_s / r.index_s[name] for r in rounds] for name in ("mirsearch", "olaf")}
    ratios = [ours / theirs for ours, theirs in zip(speed["mirsearch"], speed["olaf"], strict=True)]
    return {
        "mirsearch": {
            "workers": workers,
            "wall_s": round(median([r.index_s["mirsearch"] for r in rounds]), 2),
            "x_realtime": round(median(speed["mirsearch"]), 1),
        },
        "olaf": {
            "threads": workers,
            "wall_s": round(median([r.index_s["olaf"] for r in rounds]), 2),
            "x_realtime": round(median(speed["olaf"]), 1),
        },
        "mirsearch_over_olaf": round(median(ratios), 3),
        "rounds_mirsearch_over_olaf": [round(x, 3) for x in ratios],
        "audio_s": round(audio_s, 1),
    }


def _query_figures(rounds: list[Round], name: str, batch: Batch) -> dict:
    """Median ms per query of each program over the batch `name`, the median of the rounds'
    ratios, and each program's lowest rate of naming the clip's source first over the rounds."""
    per_round = [r.query[name] for r in rounds]
    n_clips, sources = len(batch.clips), batch.sources
    ms = {name: [1000 * q[name][0] / n_clips for q in per_round] for name in ("mirsearch", "olaf")}
    ratios = [ours / theirs for ours, theirs in zip(ms["mirsearch"], ms["olaf"], strict=True)]
    return {
        "cores": batch.cores,
        "clips": n_clips,
        **{
            name: {
                "ms_per_query": round(median(ms[name]), 1),
                "source_first": min(_hit_rate(q[name][1], sources) for q in per_round),
            }
            for name in ("mirsearch", "olaf")
        },
        "mirsearch_over_olaf": round(median(ratios), 2),
        "rounds_mirsearch_over_olaf": [round(x, 2) for x in ratios],
    }


def run(
    audio_dir: Path,
    *,
    n_queries: int = 30,
    long_batch: int = LONG_BATCH,
    seed: int = 0,
    rounds: int = ROUNDS,
) -> dict:
    """Both systems on `audio_dir`, `n_queries` seeded 10 s clips of it (those of
    bench/latency.py) and a long batch of `long_batch` others, `rounds` times; {"built": False,
    "note": ...} when Olaf or its decoder is missing."""
    try:
        binary = olaf_binary()
    except Unavailable as exc:
        return {"built": False, "note": str(exc)}
    files = discover([audio_dir])
    workers = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        try:
            path, origin = decoders(scratch / "bin")
        except Unavailable as exc:
            return {"built": False, "note": str(exc)}
        _warm_up(files, audio_dir, scratch / "warm-up", Olaf(binary, scratch / "warm-olaf", path))
        (scratch / "long").mkdir()
        short = _batch(workers, excerpts(files, scratch, n=n_queries, seed=seed, clip_s=CLIP_S))
        long = excerpts(files, scratch / "long", n=long_batch, seed=seed + 1, clip_s=CLIP_S)
        batches = {
            "every_core": short,
            "one_core": Batch(1, short.clips, short.sources),
            "long_batch": _batch(workers, long),
        }
        measured = [
            _round(
                number,
                Olaf(binary, scratch / f"olaf-home-{number}", path),
                files,
                audio_dir,
                scratch / f"mirsearch-home-{number}",
                batches,
            )
            for number in range(rounds)
        ]
    index = _index_figures(measured, workers)
    query = {name: _query_figures(measured, name, batch) for name, batch in batches.items()}
    return {
        "built": True,
        "decoders": origin,
        "files": len(files),
        "audio_hours": round(index.pop("audio_s") / 3600, 3),
        "rounds": rounds,
        "index": index,
        "query": {"clip_s": CLIP_S, **query},
        "footprint": measured[-1].footprint,
    }


def _batch(cores: int, pairs: list[tuple[Path, Path]]) -> Batch:
    return Batch(cores, [str(clip) for clip, _ in pairs], [source for _, source in pairs])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio_dir", type=Path)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--long-batch", type=int, default=LONG_BATCH)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    figures = run(
        args.audio_dir, n_queries=args.queries, long_batch=args.long_batch, rounds=args.rounds
    )
    print(json.dumps(figures, indent=2))
