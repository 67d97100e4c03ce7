"""The real server (`mirsearch serve` on 127.0.0.1) under 50 concurrent clients: no errors, and
every answer names the right track."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from mirsearch.api import Engine
from mirsearch.audio import load
from mirsearch.config import Settings
from mirsearch.demo import write_demo_catalog
from mirsearch.encoding import write

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[1] / "bench" / "serve.py"


def load_driver():
    """bench/serve.py: the same driver `make bench` reports latency with."""
    spec = importlib.util.spec_from_file_location("bench_serve", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fifty_concurrent_clients_get_right_answers_no_errors_and_no_5xx(tmp_path):
    music = tmp_path / "music"
    paths = write_demo_catalog(music, n_tracks=4)
    home = tmp_path / "home"
    Engine(Settings.from_env({}, home=home)).index_paths([music])
    clips, sources = [], {}
    for i, path in enumerate(paths[:3]):
        samples = load(path).samples[(5 + i) * 16_000 : (15 + i) * 16_000]
        clips.append(write(tmp_path / f"clip-{i}.wav", samples, 16_000))
        sources[clips[-1].name] = str(path.resolve())
    report = load_driver().run(home, clips, clients=50, rounds=2, sources=sources)
    assert report["requests"] == 50 * 2 * 3
    assert report["connection_errors"] == [], report
    assert report["server_errors"] == 0 and report["statuses"] == {"200": 300}, report
    assert report["unexpected_responses"] == [], report
    # every concurrent search and match named the clip's source first, every lookup its track
    assert report["wrong_answers"] == 0, report["wrong_answer_examples"]
    for endpoint in ("search", "match", "track"):
        assert 0 < report[endpoint]["p50_ms"] <= report[endpoint]["p95_ms"], report
    # gunicorn's master and a worker per core, each worker with the model and the index in it
    assert report["server_processes"] == 1 + (os.cpu_count() or 1), report
    assert report["server_worker_peak_rss_mb"] > 100, report
