"""Crash safety of `mirsearch index`: SIGKILLed at random moments while the folder changes, the
catalog and the vector index always agree, and a final run leaves every file indexed once."""

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
from conftest import SR, clicks, noise, tone

from mirsearch.analysis import file_sha256
from mirsearch.api import Engine
from mirsearch.audio import write
from mirsearch.catalog import Catalog, Track
from mirsearch.config import Settings
from mirsearch.index import GENERATION_FILE

pytestmark = pytest.mark.slow

SCRIPT = Path(sys.executable).with_name("mirsearch")
CLI = (
    [str(SCRIPT)]
    if SCRIPT.is_file()
    else [sys.executable, "-c", "from mirsearch.cli import main; main()"]
)
KILLS = 20  # runs SIGKILLed at a random moment (or let finish) before the final one
FILE_S = 4.0  # seconds of audio per synthetic file: a few windows each, quick to embed


def _synthetic(kind: int, seed: int) -> np.ndarray:
    """A distinct short clip: a tone, a click track or noise, chosen by `kind` and `seed`."""
    if kind == 0:
        return tone(180.0 * 1.13 ** (seed % 24), FILE_S)
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


def _index(home: Path, folder: Path, log: Path) -> subprocess.Popen:
    with open(log, "ab") as err:
        return subprocess.Popen(
            [*CLI, "index", str(folder), "--workers", "1", "--prune", "--json"],
            env=_env(home),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def _run_to_end(home: Path, folder: Path, log: Path) -> float:
    """Index `folder` into `home` without interruption; returns the wall time in seconds."""
    started = time.perf_counter()
    code = _index(home, folder, log).wait(timeout=120)
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


def test_sigkilled_index_runs_leave_catalog_and_index_agreeing(tmp_path):
    rng = random.Random(20240611)
    folder = Folder(tmp_path / "music", rng)
    home, log = tmp_path / "home", tmp_path / "index.log"
    settings = Settings.from_env({}, home=home)
    run_s = _run_to_end(home, folder.root, log)  # measured: how long a run takes on this machine
    _check_agreement(settings)

    outcomes = {"killed": 0, "completed": 0}
    for _ in range(KILLS):
        # kill anywhere from the imports to past the end of a run as long as the last one that
        # completed (the machine is shared: its speed drifts); about half the runs are killed
        delay_s = rng.uniform(0.5, 1.5) * run_s
        started = time.perf_counter()
        process = _index(home, folder.root, log)
        try:
            process.wait(timeout=delay_s)
            assert process.returncode == 0, log.read_text()[-2000:]
            run_s = time.perf_counter() - started
            outcomes["completed"] += 1
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            outcomes["killed"] += 1
        _check_agreement(settings)
        if rng.random() < 0.5:
            folder.change()
    assert outcomes["killed"] >= KILLS // 4, outcomes

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
        if not (m := GENERATION_FILE.match(p.name)) or int(m.group(2)) != generation
    }
    assert not leftovers, f"files of other generations than {generation}: {leftovers}"

    query = rng.choice(files)
    search = subprocess.run(
        [*CLI, "search", str(query), "--json"],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert search.returncode == 0, search.stderr
    results = json.loads(search.stdout)["results"]
    assert results[0]["path"] == str(query) and results[0]["track_id"] == rows[str(query)].id
