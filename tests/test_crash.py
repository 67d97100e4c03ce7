"""Crash safety of `mirsearch index`: killed (SIGKILL) at named points of a commit, interrupted
(Ctrl-C) and killed at random moments of its work while the folder changes, the catalog and the
vector index always agree, and a final run leaves every file indexed once."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import CLI, SR, clicks, noise, tone

from mirsearch.analysis import file_sha256
from mirsearch.api import Engine
from mirsearch.catalog import Catalog
from mirsearch.cli import INTERRUPTED
from mirsearch.config import Settings
from mirsearch.encoding import write
from mirsearch.generations import GENERATION_FILE, READERS_LOCK, WRITER_LOCK
from mirsearch.schema import Track

pytestmark = pytest.mark.slow

RANDOM_KILLS = 8  # runs SIGKILLed at a random moment of their work (or let finish)
FILE_S = 4.0  # seconds of audio per synthetic file: a few windows each, quick to embed
BATCH = 4  # tracks per commit in the runs below, so that a run makes several commits

# `mirsearch index` with hooks at named points: argv is POINT N ACTION then the CLI's arguments;
# at the N-th time POINT is reached the process is SIGKILLed ("kill") or Ctrl-C's
# KeyboardInterrupt is raised there ("interrupt"). It prints "ready" once its imports are done.
HOOKED = r"""
import os, signal, sys
import sqlalchemy
from mirsearch import commits, indexer
from mirsearch.index import VectorIndex

point, nth, action = sys.argv[1], int(sys.argv[2]), sys.argv[3]
seen = []

def reached(name):
    seen.append(name)
    if name == point and seen.count(name) == nth:
        if action == "interrupt":  # what SIGINT's handler raises, raised right here: a signal
            raise KeyboardInterrupt  # delivered later could land in a finaliser and be ignored
        os.kill(os.getpid(), signal.SIGKILL)

save = VectorIndex.save
def save_between_stops(self, directory, generation, **options):
    reached("saving")  # a batch's rows are flushed, its generation's files not yet written
    save(self, directory, generation, **options)
    reached("vectors-saved")  # the generation's files are written, the catalog not yet committed
VectorIndex.save = save_between_stops
# a transaction's COMMIT is being sent to the database
sqlalchemy.event.listen(sqlalchemy.engine.Engine, "commit", lambda conn: reached("commit"))
prune = indexer.prune_generations
def stop_then_prune(directory, *, keep):
    reached("prune")  # at the start of a run (indexer), and after every commit (commits)
    return prune(directory, keep=keep)
indexer.prune_generations = commits.prune_generations = stop_then_prune
analyse_all = indexer.analyse_all
def analysed(*args, **kwargs):
    for result in analyse_all(*args, **kwargs):
        reached("analysed")  # a file's analysis is done, not yet handed to a commit
        yield result
indexer.analyse_all = analysed
init = indexer.Indexer.__init__
def in_small_batches(self, *args, **kwargs):
    init(self, *args, **kwargs)
    self.batch_tracks = BATCH
indexer.Indexer.__init__ = in_small_batches

from mirsearch.cli import main
print("ready", flush=True)
main(sys.argv[4:], prog_name="mirsearch")
""".replace("BATCH", str(BATCH))

# Named points (point, occurrence, action). Each run before them has every file to redo, so it
# commits at least three batches: commit 1.. are the batches (the schema check, at the schema's
# revision, commits nothing); prune 1 is at the start of the run, 2.. after each batch.
NAMED = [
    ("saving", 2, "kill"),  # rows flushed, generation files not written
    ("vectors-saved", 1, "kill"),  # generation files written, catalog not committed
    ("vectors-saved", 3, "kill"),
    ("commit", 1, "kill"),  # inside the commit of the first batch
    ("commit", 3, "kill"),
    ("prune", 2, "kill"),  # committed, older generations not yet pruned
    ("prune", 4, "kill"),
    ("analysed", 6, "interrupt"),  # Ctrl-C with a batch half gathered
    ("vectors-saved", 2, "interrupt"),  # Ctrl-C between writing the files and committing
]


def _synthetic(kind: int, seed: int) -> np.ndarray:
    """A distinct short clip: a tone, a click track or noise, chosen by `kind` and `seed`."""
    if kind == 0:
        return tone(180.0 * 1.01 ** (seed % 300), FILE_S)  # 300 distinct tones, 180 Hz-3.5 kHz
    if kind == 1:
        return clicks(70.0 + 7 * (seed % 20), FILE_S, seed=seed)
    return noise(FILE_S, seed=seed)


class Folder:
    """The music folder the runs index, changed now and then between them."""

    EXTENSIONS = (".wav", ".flac", ".ogg")

    def __init__(self, root: Path, rng: random.Random):
        self.root, self.rng, self.next_seed = root, rng, 0
        root.mkdir()
        for _ in range(12):
            self.add()

    def files(self) -> list[Path]:
        return sorted(self.root.iterdir())

    def add(self) -> None:
        seed, self.next_seed = self.next_seed, self.next_seed + 1
        kind = seed % 3
        write(self.root / f"track-{seed:03d}{self.EXTENSIONS[kind]}", _synthetic(kind, seed), SR)

    def modify(self) -> None:
        path = self.rng.choice(self.files())
        seed, self.next_seed = self.next_seed, self.next_seed + 1
        kind = self.EXTENSIONS.index(path.suffix)
        path.unlink()
        write(path, _synthetic(kind, 1000 + seed), SR)

    def remove(self) -> None:
        self.rng.choice(self.files()).unlink()

    def modify_all(self) -> None:
        """New content in every file: the next run has all of them to analyse and commit."""
        for path in self.files():
            seed, self.next_seed = self.next_seed, self.next_seed + 1
            path.unlink()
            write(path, _synthetic(self.EXTENSIONS.index(path.suffix), 1000 + seed), SR)

    def change(self) -> str:
        """Add, modify or remove a file, keeping between 10 and 14 of them; returns what it did."""
        n = len(self.files())
        choices = ["modify"] + ["add"] * (n < 14) + ["remove"] * (n > 10)
        what = self.rng.choice(choices)
        getattr(self, what)()
        return what


def _env(home: Path) -> dict[str, str]:
    """This environment with the catalog (SQLite) and the index under `home`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIRSEARCH_")}
    return {**env, "MIRSEARCH_HOME": str(home)}


def _index(
    home: Path, folder: Path, log: Path, *, stop: tuple[str, int, str] = ("nowhere", 1, "kill")
) -> subprocess.Popen:
    """`mirsearch index --prune` of `folder` into `home`, stopped at `stop` (see HOOKED); returns
    once the process has done its imports."""
    with open(log, "ab") as err:
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                HOOKED,
                *map(str, stop),
                "index",
                str(folder),
                "--workers",
                "1",
                "--prune",
                "--json",
            ],
            env=_env(home),
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    assert process.stdout.readline() == "ready\n", log.read_text()[-2000:]
    return process


def _finish(process: subprocess.Popen, *, timeout: float = 120) -> int:
    process.communicate(timeout=timeout)
    return process.returncode


def _run_to_end(home: Path, folder: Path, log: Path) -> float:
    """Index `folder` into `home` without interruption; returns the seconds of work it took
    (imports excluded)."""
    process = _index(home, folder, log)
    started = time.perf_counter()
    code = _finish(process)
    assert code == 0, log.read_text()[-2000:]
    return time.perf_counter() - started


def _check_agreement(settings: Settings) -> dict[str, Track]:
    """The committed catalog and index agree; returns the catalog's rows by path."""
    engine = Engine(settings)
    try:
        tracks, _ = engine.catalog.list_tracks(status=None, per_page=10_000)
        state = engine.catalog.index_state()
        index = engine.index()  # loads the generation the catalog records, checking its meta
    finally:
        engine.catalog.close()
    rows = {t.path: t for t in tracks}
    assert len(rows) == len(tracks)
    indexed = {t.id: t for t in tracks if t.status == "indexed"}
    assert all(t.status in ("indexed", "failed") for t in tracks), "rows left half-done"
    if state.generation == 0:
        assert not indexed
        return rows
    assert set(index.track_ids().tolist()) == set(indexed)
    for track in indexed.values():  # a complete row, with as many vectors as it says
        assert track.sha256 and track.duration_s and track.genre and track.model_hash
        assert track.model_hash == state.model_hash
        assert index.n_windows(track.id) == track.n_windows >= 1
    return rows


def test_killed_and_interrupted_index_runs_leave_catalog_and_index_agreeing(tmp_path):
    rng = random.Random(20240611)
    folder = Folder(tmp_path / "music", rng)
    home, log = tmp_path / "home", tmp_path / "index.log"
    settings = Settings.from_env({}, home=home)
    work_s = _run_to_end(home, folder.root, log)
    _check_agreement(settings)

    for point, nth, action in NAMED:
        folder.modify_all()
        code = _finish(_index(home, folder.root, log, stop=(point, nth, action)))
        if action == "kill":
            assert code == -signal.SIGKILL, (point, nth, code, log.read_text()[-2000:])
        else:  # Ctrl-C: click reports it and exits 1, the transaction rolled back
            told = [line for line in log.read_text().splitlines() if line.strip()]
            assert code == 1, (point, nth, told[-3:])
            assert told[-2:] == [f"interrupted: {INTERRUPTED}", "Aborted!"], (point, nth, told[-3:])
        _check_agreement(settings)

    outcomes = {"killed": 0, "completed": 0}
    for _ in range(RANDOM_KILLS):
        folder.change()
        folder.change()
        # anywhere in the work (imports done) up to past the end of the last complete run
        delay_s = rng.uniform(0.0, 1.2) * work_s
        process = _index(home, folder.root, log)
        started = time.perf_counter()
        try:
            process.wait(timeout=delay_s)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            outcomes["killed"] += 1
        else:
            work_s = time.perf_counter() - started
            outcomes["completed"] += 1
        code = _finish(process)
        assert code in (0, -signal.SIGKILL), log.read_text()[-2000:]
        _check_agreement(settings)
    assert outcomes["killed"] >= RANDOM_KILLS // 4, outcomes

    _run_to_end(home, folder.root, log)
    rows = _check_agreement(settings)
    files = folder.files()
    assert sorted(rows) == [str(p) for p in files]  # each file exactly once, the removed gone
    for path in files:
        row = rows[str(path)]
        assert row.status == "indexed" and row.sha256 == file_sha256(path), path.name
    catalog = Catalog(settings.db_url)
    generation = catalog.index_state().generation
    catalog.close()
    leftovers = {
        p.name
        for p in settings.index_dir.iterdir()
        if p.name not in (READERS_LOCK, WRITER_LOCK)
        and (not (m := GENERATION_FILE.match(p.name)) or int(m.group(2)) != generation)
    }
    assert not leftovers, f"files of other generations than {generation}: {leftovers}"

    # the recovered catalog's windows and prints find a file as the duplicate of itself (a
    # `search` ranks by sound, and these tones and noises sound alike: that names no one track)
    query = rng.choice(files)
    match = subprocess.run(
        [*CLI, "match", str(query), "--json"],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert match.returncode == 0, match.stderr
    results = json.loads(match.stdout)["matches"]
    assert results[0]["path"] == str(query) and results[0]["track_id"] == rows[str(query)].id


def _processes_of(home: Path) -> list[int]:
    """Ids of the live processes whose environment names `home` as MIRSEARCH_HOME (Linux)."""
    wanted = f"MIRSEARCH_HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and wanted in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers found through /proc")
@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM])
def test_a_run_killed_while_its_workers_analyse_leaves_no_worker_and_the_next_run_resumes(
    tmp_path, stop
):
    """The pool's workers, forked after the run took the writer lock, had outlived a killed
    run, blocked on its pipe and holding the lock: every later run waited for ever. SIGTERM
    (a service stopped, a CI job cancelled) is told as Ctrl-C is."""
    folder = Folder(tmp_path / "music", random.Random(7))
    home, log = tmp_path / "home", tmp_path / "index.log"
    with open(log, "ab") as err:
        process = subprocess.Popen(
            [sys.executable, "-c", HOOKED, "analysed", "2", "none", "index", str(folder.root)]
            + ["--workers", "2"],
            env=_env(home),
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    assert process.stdout.readline() == "ready\n", log.read_text()[-2000:]
    deadline = time.monotonic() + 120
    while len(_processes_of(home)) < 3 and time.monotonic() < deadline:  # the run, its 2 workers
        time.sleep(0.05)
    assert len(_processes_of(home)) >= 3, log.read_text()[-2000:]
    process.send_signal(stop)
    code = _finish(process)
    if stop == signal.SIGTERM:
        told = [line for line in log.read_text().splitlines() if line.strip()]
        assert code == 1 and told[-2:] == [f"interrupted: {INTERRUPTED}", "Aborted!"], told[-3:]
    deadline = time.monotonic() + 20
    while _processes_of(home) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _processes_of(home), "workers outlived their run"
    _run_to_end(home, folder.root, log)
    rows = _check_agreement(Settings.from_env({}, home=home))
    assert sorted(rows) == [str(p) for p in folder.files()]
