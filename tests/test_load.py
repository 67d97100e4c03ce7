"""The real server (`mirsearch serve` on 127.0.0.1) under 50 concurrent clients: no errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from mirsearch.api import Engine
from mirsearch.audio import load, write
from mirsearch.config import Settings
from mirsearch.demo import write_demo_catalog

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[1] / "bench" / "serve.py"


def load_driver():
    """bench/serve.py: the same driver `make bench` reports latency with."""
    spec = importlib.util.spec_from_file_location("bench_serve", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fifty_concurrent_clients_get_no_errors_and_no_5xx(tmp_path):
    music = tmp_path / "music"
    paths = write_demo_catalog(music, n_tracks=4)
    home = tmp_path / "home"
    Engine(Settings.from_env({}, home=home)).index_paths([music])
    clips = []
    for i, path in enumerate(paths[:3]):
        samples = load(path).samples[(5 + i) * 16_000 : (15 + i) * 16_000]
        clips.append(write(tmp_path / f"clip-{i}.wav", samples, 16_000))
    report = load_driver().run(home, clips, clients=50, rounds=2)
    assert report["requests"] == 50 * 2 * 3
    assert report["connection_errors"] == [], report
    assert report["server_errors"] == 0 and report["statuses"] == {"200": 300}, report
    assert report["unexpected_responses"] == [], report
    assert report["search"]["p95_ms"] > 0 and report["server_peak_rss_mb"] > 0
