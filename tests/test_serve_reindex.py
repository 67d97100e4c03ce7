"""`mirsearch serve` keeps answering, and answering right, while `mirsearch index` re-indexes the
same home with changed files; then it serves the new generation without being restarted."""

from __future__ import annotations

import importlib.util
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import CLI

from mirsearch.api import Engine
from mirsearch.audio import load
from mirsearch.catalog import Catalog
from mirsearch.config import Settings
from mirsearch.demo import demo_pieces, render, write_demo_catalog
from mirsearch.encoding import write

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[1] / "bench" / "serve.py"
CLIENTS = 24
ROUNDS = 3  # re-index runs, each after a change of the folder
SR = 16_000


def load_driver():
    """bench/serve.py: starts `mirsearch serve` and sends multipart requests."""
    spec = importlib.util.spec_from_file_location("bench_serve", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def clip_of(path: Path, folder: Path, *, start_s: float = 8.0) -> bytes:
    """10 s of the file from `start_s`, as WAV bytes."""
    samples = load(path).samples[int(start_s * SR) : int((start_s + 10) * SR)]
    return write(folder / f"clip-{path.stem}.wav", samples, SR).read_bytes()


def new_piece(path: Path, seed: int) -> Path:
    """A demo piece not in the catalog, written to `path` (title tag = its file name)."""
    piece = demo_pieces(1, seed=seed)[0]
    return write(path, render(piece, sample_rate=SR), SR, tags={"title": path.name})


class Clients:
    """CLIENTS threads that search and match clips of the tracks that never change, checking
    every answer, until stopped."""

    def __init__(self, driver, port: int, clips: dict[str, bytes]):
        self.driver, self.port, self.clips = driver, port, list(clips.items())
        self.stop = threading.Event()
        self.indexing = threading.Event()
        self.statuses: Counter = Counter()
        self.wrong: list[str] = []
        self.answered_while_indexing = 0
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(CLIENTS)]

    def __enter__(self) -> Clients:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=600)

    def _run(self, i: int) -> None:
        n = i
        while not self.stop.is_set():
            path, data = self.clips[n % len(self.clips)]
            endpoint = ("search", "match")[n % 2]
            n += 1
            during = self.indexing.is_set()
            try:
                url = "/api/search?k=3" if endpoint == "search" else "/api/match"
                status, body = self.driver.request(self.port, "POST", url, ("clip.wav", data))
            except OSError as exc:
                status, body = f"connection error {type(exc).__name__}", None
            problem = self._check(endpoint, path, status, body)
            with self._lock:
                self.statuses[status] += 1
                self.answered_while_indexing += during and self.indexing.is_set()
                if problem:
                    self.wrong.append(problem)

    @staticmethod
    def _check(endpoint: str, path: str, status, body) -> str | None:
        if status != 200:
            return f"{endpoint} {Path(path).name}: {status} {str(body)[:300]}"
        hits = body["results"] if endpoint == "search" else body["matches"]
        if not hits or hits[0]["path"] != path:
            first = hits[0]["path"] if hits else None
            return f"{endpoint} {Path(path).name}: first answer {first}"
        return None


def reindex(home: Path, music: Path, log: Path) -> None:
    with open(log, "ab") as err:
        done = subprocess.run(
            [*CLI, "index", str(music), "--prune", "--json"],
            env={**_env(), "MIRSEARCH_HOME": str(home)},
            stdout=subprocess.DEVNULL,
            stderr=err,
            timeout=600,
        )
    assert done.returncode == 0, log.read_text()[-2000:]


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("MIRSEARCH_")}


def top_path(driver, port: int, data: bytes) -> str | None:
    status, body = driver.request(port, "POST", "/api/search?k=1", ("clip.wav", data))
    assert status == 200, body
    return body["results"][0]["path"] if body["results"] else None


def test_the_server_answers_right_through_a_reindex_and_moves_on_by_itself(tmp_path):
    music, home, log = tmp_path / "music", tmp_path / "home", tmp_path / "index.log"
    paths = write_demo_catalog(music, n_tracks=6)
    Engine(Settings.from_env({}, home=home)).index_paths([music])
    stable = paths[:3]  # never touched: a clip of each must find it, whatever generation
    clips = {str(p.resolve()): clip_of(p, tmp_path) for p in stable}
    changed = paths[3]
    driver = load_driver()
    port = driver.free_port()
    server = driver.start_server(home, port)
    catalog = Catalog(Settings.from_env({}, home=home).db_url)
    generations = [catalog.index_state().generation]
    try:
        with Clients(driver, port, clips) as clients:
            for r in range(ROUNDS):
                time.sleep(2.0)  # every client has answers before the folder changes
                changed.unlink()
                new_piece(changed, seed=500 + r)  # same path, other music
                added = new_piece(music / f"added-{r}.flac", seed=600 + r)
                if r:
                    paths[3 + r].unlink()  # demo-05, then demo-06: gone, pruned
                clients.indexing.set()
                reindex(home, music, log)
                clients.indexing.clear()
                generations.append(catalog.index_state().generation)
            # the newest music is found once the server has loaded the last generation itself
            wanted = {
                str(changed.resolve()): clip_of(changed, tmp_path),
                str(added.resolve()): clip_of(added, tmp_path),
            }
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                found = {want: top_path(driver, port, data) for want, data in wanted.items()}
                if all(want == got for want, got in found.items()):
                    break
                time.sleep(1.0)
            time.sleep(2.0)  # and the clients go on a little on the new generation
    finally:
        server.terminate()
        server.wait(timeout=60)
        catalog.close()
    assert clients.wrong == [], (clients.wrong[:10], len(clients.wrong), clients.statuses)
    assert set(clients.statuses) == {200}, clients.statuses
    assert sum(clients.statuses.values()) >= 5 * CLIENTS, clients.statuses
    assert clients.answered_while_indexing >= CLIENTS, clients.answered_while_indexing
    assert all(want == got for want, got in found.items()), found
    assert generations == sorted(set(generations)) and len(generations) == ROUNDS + 1, generations
