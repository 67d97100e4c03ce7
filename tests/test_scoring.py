"""Duplicate scores: the calibration shipped for the shipped model, and versions ranked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mirsearch.config import DuplicateConfig
from mirsearch.model_card import read_card
from mirsearch.scoring import CALIBRATION, Match, calibrated_threshold, ranked

CONFIG = DuplicateConfig()


def version(track_id: int, *, speed: float, agreement: float, score: float = 1.0) -> Match:
    return Match(track_id, score, 0.0, 0.0, 10.0, speed, 15, 0.9, agreement=agreement)


def test_the_version_at_speed_one_comes_first_unless_another_agrees_clearly_better():
    """Copies 5 % fast or slow give up 0.1 of agreement to their speed; equal evidence goes to
    the higher score, then the lower track id."""
    original = version(3, speed=1.0, agreement=0.9)
    fast = version(1, speed=1.05, agreement=0.95)
    slow = version(2, speed=0.95, agreement=0.99)
    assert ranked([fast, slow, original]) == [original, slow, fast]
    duller = version(3, speed=1.0, agreement=0.8)
    assert ranked([duller, fast]) == [fast, duller]
    twin = version(5, speed=1.0, agreement=0.9)
    weaker = version(4, speed=1.0, agreement=0.9, score=0.99)
    assert ranked([weaker, twin, original]) == [original, twin, weaker]


def test_the_shipped_calibration_belongs_to_the_shipped_model():
    """mirsearch/assets/duplicates.json holds the threshold calibrated for one matching network
    (the shipped checkpoint's, or the one a student's matching branch was copied from): a
    retrained matcher must be recalibrated (`make calibrate-dupes`), not fall back to the
    default threshold with a warning."""
    calibration = json.loads(CALIBRATION.read_text())
    shipped = read_card().matching_hash  # what the indexer looks the threshold up by
    assert calibration["model_sha256"] == shipped, (
        "the shipped model was changed without recalibrating the duplicate threshold: "
        "run `make calibrate-dupes`"
    )
    assert calibrated_threshold(shipped) == calibration["threshold"] != CONFIG.default_threshold
    assert 0.5 < calibration["threshold"] < 1.0


@pytest.mark.slow
def test_a_clip_of_the_original_lists_it_before_its_sped_up_copies(shared_audio, tmp_path):
    """Real music: a track and its ±5 % speed copies all indexed. A clip of each version lists
    that version first and the versions within 5 % of it after it (the two copies are 10 %
    apart, beyond the speeds the windows vote over), and `dupes` groups the three with the
    speed between them."""
    from mirsearch.api import Engine
    from mirsearch.audio import load
    from mirsearch.config import Settings
    from mirsearch.encoding import write
    from mirsearch.transforms import speed

    x = load(shared_audio / "wesnoth__battle-epic.ogg").samples
    folder = tmp_path / "music"
    folder.mkdir()
    versions = {"original.flac": x}
    for name, factor in (("fast.flac", 1.05), ("slow.flac", 0.95)):
        versions[name] = speed(x, 16_000, factor=factor)[0]
    for name, samples in versions.items():
        write(folder / name, samples, 16_000)
    engine = Engine(Settings.from_env({}, home=tmp_path / "home"))
    engine.index_paths([folder], workers=1)
    ids = {Path(r.path).name: r.id for r in engine.catalog.list_tracks(per_page=10)[0]}
    for name, samples in versions.items():
        for start_s in (10.0, 40.0):
            clip = samples[int(start_s * 16_000) : int((start_s + 10.0) * 16_000)]
            write(tmp_path / "clip.wav", clip, 16_000)
            matches = engine.match(tmp_path / "clip.wav")
            assert [m.track_id for m in matches][:1] == [ids[name]], (name, start_s, matches)
            assert matches[0].speed == pytest.approx(1.0, abs=0.011)
            within_5_percent = set(versions) if name == "original.flac" else {name, "original.flac"}
            assert within_5_percent <= {Path(m.path).name for m in matches}
    (group,) = engine.dupes()
    speeds = {Path(t["path"]).name: t["speed"] for t in group["tracks"]}
    assert speeds["fast.flac"] / speeds["original.flac"] == pytest.approx(1.05, abs=0.011)
    assert speeds["slow.flac"] / speeds["original.flac"] == pytest.approx(0.95, abs=0.011)


@pytest.mark.slow
def test_a_clip_lists_a_faster_version_the_unshifted_reading_misses(shared_audio, tmp_path):
    """Real music: a track and its copy 5 % faster, both indexed (indexing flags the copy as a
    near-duplicate of it). A clip of the original at 1:40 is confirmed as it plays, where the
    copy, 0.85 semitones higher, scores 0.07; the copy is listed too, after the original."""
    from mirsearch.api import Engine
    from mirsearch.audio import load
    from mirsearch.config import Settings
    from mirsearch.encoding import write
    from mirsearch.transforms import speed

    x = load(shared_audio / "supertux__chipdisko.m4a").samples
    folder = tmp_path / "music"
    folder.mkdir()
    write(folder / "original.flac", x, 16_000)
    write(folder / "fast.flac", speed(x, 16_000, factor=1.05)[0], 16_000)
    engine = Engine(Settings.from_env({}, home=tmp_path / "home"))
    engine.index_paths([folder], workers=1)
    write(tmp_path / "clip.wav", x[100 * 16_000 : 110 * 16_000], 16_000)
    matches = engine.match(tmp_path / "clip.wav")
    assert [Path(m.path).name for m in matches] == ["original.flac", "fast.flac"]
    assert matches[1].speed / matches[0].speed == pytest.approx(1 / 1.05, abs=0.011)
