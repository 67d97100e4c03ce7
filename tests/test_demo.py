"""The demo catalog (mirsearch/demo.py): distinct pieces, so a new user's first index flags no
copies among them, while a real copy of one is still found."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SR

from mirsearch.api import Engine
from mirsearch.audio import load, played_at
from mirsearch.config import Settings
from mirsearch.demo import GROOVES, STYLE_GROOVES, STYLES, demo_pieces, write_demo_catalog
from mirsearch.encoding import write


def test_each_style_plays_its_two_grooves_at_a_tempo_in_range():
    pieces = demo_pieces(8)
    assert [p.genre for p in pieces] == STYLES * 2
    assert [p.groove for p in pieces] == [STYLE_GROOVES[s][k] for k in (0, 1) for s in STYLES]
    low, high = zip(*(GROOVES[p.groove].tempo_bpm for p in pieces), strict=True)
    assert all(lo <= p.tempo_bpm < hi for p, lo, hi in zip(pieces, low, high, strict=True))


@pytest.mark.slow
def test_the_default_demo_catalog_holds_no_near_duplicates_and_a_copy_is_found(tmp_path):
    """Two pairs of the eight had been grouped as copies (their one drum pattern lined up at
    speed 0.93); a 15 s excerpt of one played 4 % fast still names it alone."""
    paths = write_demo_catalog(tmp_path / "demo")
    engine = Engine(Settings.from_env({}, home=tmp_path / "home"))
    summary = engine.index_paths([tmp_path / "demo"])
    assert (summary.indexed, summary.duplicates) == (8, 0) and engine.dupes() == []
    for path in paths:
        assert [Path(m.path) for m in engine.match(path)] == [path]
    excerpt, _ = played_at(load(paths[5]).samples[10 * SR : 25 * SR], 1.04, sample_rate=SR)
    found = engine.match(write(tmp_path / "excerpt.wav", excerpt, SR))
    assert [(Path(m.path), m.title) for m in found] == [(paths[5], "Demo 6")]
    assert found[0].speed == pytest.approx(1.04, abs=0.01)
