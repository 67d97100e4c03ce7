"""Recording analysed files in the catalog (SQLite and PostgreSQL): bad files recorded as failed,
indexed rows filled (descriptors, tags, print), a file that breaks on re-index keeping nothing."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import SR, rows

from mirsearch.api import Engine
from mirsearch.audio import load
from mirsearch.demo import FORMATS, NOTE_NAMES, demo_pieces
from mirsearch.encoding import write
from mirsearch.schema import Track


@pytest.fixture
def settings(db_settings):
    """Every indexing test runs with the catalog on SQLite and on PostgreSQL."""
    return db_settings


def test_bad_files_are_recorded_as_failed_and_the_rest_indexed(settings, folder):
    engine = Engine(settings)
    summary = engine.index_paths([folder])
    by_name = rows(engine)
    assert "notes.txt" not in by_name
    failed = {name: t.error for name, t in by_name.items() if t.status == "failed"}
    assert set(failed) == {"empty.mp3", "text.mp3", "truncated.flac", "silent.wav"}
    assert "empty" in failed["empty.mp3"]
    assert "not an audio file" in failed["text.mp3"] or "no audio" in failed["text.mp3"]
    assert "truncated" in failed["truncated.flac"] or "corrupt" in failed["truncated.flac"]
    assert "silent" in failed["silent.wav"]
    assert summary.indexed == 5 and summary.failed == 4  # four demo tracks + the short tone
    indexed = [t for t in by_name.values() if t.status == "indexed"]
    assert all(t.key and t.genre and t.n_windows >= 1 for t in indexed)
    for t in indexed:  # the waveform its page draws
        assert len(peaks := engine.catalog.waveform(t.id).peaks) == 400 and max(peaks) == 255
    assert all(engine.catalog.waveform(t.id) is None for t in by_name.values() if t.error)
    assert_demo_tempo_and_key(by_name)
    assert by_name["demo-01.flac"].title == "Demo 1"
    assert engine.index().n_tracks == 5
    prints = engine.catalog.prints(t.id for t in by_name.values())
    assert set(prints) == {t.id for t in indexed}  # every indexed track has its print, no other
    for t in indexed:  # one frame every 1/32 s (a track shorter than a window is padded to 3 s)
        assert prints[t.id].shape[1] == pytest.approx(max(t.duration_s, 3.0) * 32, abs=2)


def assert_demo_tempo_and_key(by_name: dict[str, Track]) -> None:
    """The demo tracks' tempo and key are known by construction (mirsearch/demo.py).

    Measured on the four: tempo and key right for all four (a doubled tempo, an octave error
    beat trackers make, had been read for a 74 BPM piece before the pieces played a groove each;
    with Krumhansl and Kessler's profiles, C major had been read as its relative minor).
    """
    at_tempo = in_key = 0
    for i, piece in enumerate(demo_pieces(4)):
        row = by_name[f"demo-{i + 1:02d}{FORMATS[i]}"]
        ratio = row.tempo_bpm / piece.tempo_bpm
        assert any(abs(ratio - octave) <= 0.015 * octave for octave in (1, 2)), (row.path, ratio)
        at_tempo += abs(ratio - 1) <= 0.015
        mode = "minor" if piece.minor else "major"
        relative = (
            f"{NOTE_NAMES[(piece.tonic + 9) % 12]} minor"
            if mode == "major"
            else f"{NOTE_NAMES[(piece.tonic + 3) % 12]} major"
        )
        assert row.key in (f"{NOTE_NAMES[piece.tonic]} {mode}", relative), (row.path, row.key)
        in_key += row.key == f"{NOTE_NAMES[piece.tonic]} {mode}"
    assert at_tempo == 4 and in_key == 4, (at_tempo, in_key)


def test_a_file_that_breaks_on_re_index_keeps_nothing_of_its_old_audio(settings, folder):
    """Its vectors, print, duplicate flag, genre, tags and descriptors described audio that is
    gone: none of them stay."""
    engine = Engine(settings)
    engine.index_paths([folder])
    shutil.copy(folder / "demo-01.flac", folder / "copy.flac")
    engine.index_paths([folder])
    copy = rows(engine)["copy.flac"]
    assert copy.duplicate_of == rows(engine)["demo-01.flac"].id
    assert copy.id in engine.catalog.prints([copy.id])
    assert copy.genre and copy.duration_s and copy.tempo_bpm and copy.title == "Demo 1"
    (folder / "copy.flac").write_bytes(b"not audio any more" * 100)
    summary = engine.index_paths([folder])
    broken = rows(engine)["copy.flac"]
    assert summary.failed == 1 and broken.status == "failed"
    assert broken.duplicate_of is None and broken.duplicate_evidence is None
    assert engine.catalog.prints([broken.id]) == {} and engine.catalog.waveform(broken.id) is None
    assert not engine.index().contains(broken.id)
    analysed = ["genre", "genre_probabilities", "tags", "duration_s", "tempo_bpm", "key", "title"]
    assert all(getattr(broken, field) is None for field in analysed)
    genre = rows(engine)["demo-01.flac"].genre
    listed, _ = engine.catalog.list_tracks(genre=genre, status=None)
    assert broken.id not in {t.id for t in listed}


def test_a_track_keeps_which_of_its_windows_lie_in_a_pause_and_similar_leaves_them_out(
    settings, demo_dir, tmp_path
):
    music = load(demo_dir / "demo-01.flac").samples
    hidden = write(tmp_path / "hidden.flac", np.r_[music, np.zeros(40 * SR, np.float32)], SR)
    engine = Engine(settings)
    engine.index_paths([demo_dir, hidden])
    row = rows(engine)["hidden.flac"]
    sounding = engine.catalog.waveform(row.id).sounding(row.n_windows)
    heard = int(len(music) / SR / settings.embedding.hop_s)  # windows starting in the music
    assert sounding[: heard - 2].all() and not sounding[heard + 2 :].any()
    assert engine.catalog.waveform(rows(engine)["demo-02.ogg"].id).sounding(5).all()
    assert [r.track_id for r in engine.similar(row.id, k=3)][0] == rows(engine)["demo-01.flac"].id
