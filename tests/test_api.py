"""The Engine's queries and the public Python API: what they answer, on an empty catalog too,
without torch where they need no network."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SR, melody, tone, write_video

from mirsearch import audio, uploads
from mirsearch.api import Engine
from mirsearch.audio import load
from mirsearch.config import Settings
from mirsearch.demo import write_demo_catalog
from mirsearch.encoding import write
from mirsearch.errors import (
    IndexMismatchError,
    InvalidParameterError,
    NotFoundError,
    TooShortError,
)
from mirsearch.index import VectorIndex


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return write_demo_catalog(tmp_path_factory.mktemp("demo"), n_tracks=3)


def test_search_match_and_classify_on_an_empty_catalog(settings, demo):
    engine = Engine(settings)
    with pytest.raises(NotFoundError, match="catalog is empty"):
        engine.search(demo[0])
    with pytest.raises(NotFoundError, match="catalog is empty"):
        engine.match(demo[0])
    classified = engine.classify(demo[0])
    assert classified.similar == [] and classified.genre in engine.embedder.labels
    assert engine.dupes() == []


def test_classify_without_similar_tracks_never_reads_the_index(settings, demo, monkeypatch):
    """Genres and tags of a file need no catalog: an index this model cannot read (another
    model's, say) does not stop them."""
    engine = Engine(settings)
    engine.index_paths([demo[0].parent])

    def unreadable():
        raise IndexMismatchError("the vector index was built by another model")

    monkeypatch.setattr(engine, "index", unreadable)
    classified = engine.classify(demo[0], similar_k=0)
    assert classified.similar == [] and classified.genre in engine.embedder.labels
    with pytest.raises(IndexMismatchError):
        engine.classify(demo[0], similar_k=1)


def test_the_duplicate_groups_are_read_from_what_indexing_flagged(
    settings, demo, tmp_path, monkeypatch
):
    """Nothing is searched again (the site's duplicates page had taken 4-5 s a server process
    for 54 tracks, every track's windows matched against the rest): the groups move with the
    flags indexing stores, a prune taking a track out of its group."""
    folder = tmp_path / "music"
    folder.mkdir()
    shutil.copy(demo[0], folder / "a.ogg")
    shutil.copy(demo[0], folder / "a-copy.ogg")
    engine = Engine(settings)
    engine.index_paths([folder])

    with monkeypatch.context() as patched:
        patched.setattr(VectorIndex, "search_windows", lambda *a, **k: pytest.fail("searched"))
        assert [len(g["tracks"]) for g in engine.dupes()] == [2]
    shutil.copy(demo[1], folder / "b.ogg")
    shutil.copy(demo[1], folder / "b-copy.ogg")
    engine.index_paths([folder])
    assert [len(g["tracks"]) for g in engine.dupes()] == [2, 2]
    (folder / "b-copy.ogg").unlink()
    engine.index_paths([folder], prune=True)
    assert [[Path(t["path"]).name for t in g["tracks"]] for g in engine.dupes()] == [
        ["a-copy.ogg", "a.ogg"]
    ]


def test_search_and_similar_rank_with_the_configured_search_settings(settings, demo):
    """The blend of "sounds alike" vectors and windows is the user's setting, not a default:
    all style and no style order the other tracks by different evidence."""
    engine = Engine(settings)
    engine.index_paths([demo[0].parent])
    track_id = engine.catalog.list_tracks(per_page=10)[0][0].id
    scores = {}
    for weight in (0.0, 1.0):
        search = dataclasses.replace(settings.search, style_weight=weight)
        engine.settings = dataclasses.replace(settings, search=search)
        scores[weight] = (
            [round(r.score, 4) for r in engine.similar(track_id, k=2)],
            [round(r.score, 4) for r in engine.search(demo[0], k=3)][1:],
        )
    assert scores[0.0][0] != scores[1.0][0] and scores[0.0][1] != scores[1.0][1]


def test_the_public_functions_use_the_home_of_the_environment(tmp_path, demo, monkeypatch):
    import mirsearch

    home = tmp_path / "home"
    monkeypatch.setenv("MIRSEARCH_HOME", str(home))
    for name in [n for n in os.environ if n.startswith("MIRSEARCH_") and n != "MIRSEARCH_HOME"]:
        monkeypatch.delenv(name)
    mirsearch.default_engine.cache_clear()
    clip = write(tmp_path / "clip.wav", load(demo[1]).samples[5 * 16_000 : 15 * 16_000], 16_000)
    try:
        # a query where there is no catalog says so, and makes none (it had made an empty one)
        with pytest.raises(NotFoundError, match=f"no catalog at {home / 'catalog.db'}"):
            mirsearch.search(clip)
        assert not home.exists()
        summary = mirsearch.index_paths([demo[0].parent])
        assert summary.indexed == 3 and (home / "catalog.db").is_file()
        # parameters are checked as the command line and HTTP check them (TypeErrors before)
        for call in (
            lambda: mirsearch.search(clip, k=2.5),
            lambda: mirsearch.search(clip, k=True),
            lambda: mirsearch.similar("1"),
            lambda: mirsearch.classify(clip, similar_k=101),
            lambda: mirsearch.classify(clip, similar_k=-1),
        ):
            with pytest.raises(InvalidParameterError):
                call()
        found = mirsearch.search(clip, k=2)
        assert len(found) == 2 and found[0].path == str(demo[1].resolve())
        matches = mirsearch.match(clip)
        assert matches and matches[0].path == str(demo[1].resolve())
        assert matches[0].track_offset_s == pytest.approx(5.0, abs=1.6)
        classified = mirsearch.classify(clip, similar_k=1)
        labels = mirsearch.default_engine().embedder.labels
        assert classified.genre in labels and set(classified.probabilities) == set(labels)
        assert [r.path for r in classified.similar] == [str(demo[1].resolve())]
        assert mirsearch.similar(found[0].track_id, k=1)[0].track_id != found[0].track_id
    finally:
        mirsearch.default_engine().catalog.close()
        mirsearch.default_engine.cache_clear()


# What answers without the network: a process that runs only these never imports torch.
WITHOUT_THE_NETWORK = """
import sys
from pathlib import Path

from mirsearch.api import Engine
from mirsearch.config import Settings

engine = Engine(Settings.from_env({}, home=Path(sys.argv[1])))
again = engine.index_paths([sys.argv[2]])
track_id = engine.catalog.list_tracks(per_page=1)[0][0].id
print(again.indexed, again.unchanged, len(engine.similar(track_id, k=2)), len(engine.dupes()))
print("torch loaded:", "torch" in sys.modules)
"""


def test_an_index_run_with_nothing_to_do_similar_and_dupes_never_load_torch(
    settings, demo, tmp_path
):
    music = tmp_path / "music"
    music.mkdir()
    for path in demo:
        shutil.copy(path, music)
    shutil.copy(demo[0], music / "the-same-again.ogg")
    Engine(settings).index_paths([music])
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_THE_NETWORK, settings.home, music],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["0 4 2 1", "torch loaded: False"]


def test_one_folder_or_one_genre_given_as_a_string_is_that_one(settings, demo):
    """Not the letters of its name: index_paths("music") had looked for m, u, s, i and c."""
    engine = Engine(settings)
    assert engine.index_paths(str(demo[0].parent)).indexed == len(demo)
    genre = engine.catalog.genres()[0][0]
    assert engine.allowed_tracks(genre) == engine.allowed_tracks([genre]) != set()
    # read as the catalog reads it, as `tracks --genre` did: it had been an "unknown genre"
    assert engine.allowed_tracks(f" {genre.upper()} ") == engine.allowed_tracks(genre)


def test_a_genre_typed_decomposed_is_the_catalog_s_composed_one(settings):
    """It had been refused as unknown, with the identical-looking name in the list of genres."""
    from mirsearch.schema import Track

    engine = Engine(settings)
    with engine.catalog.session() as session, session.begin():
        track = Track(path="/music/a.flac", status="indexed", tag_genre="électro")
        session.add(track)
    assert engine.allowed_tracks(["e\u0301lectro"]) == {track.id}


def test_several_genres_keep_the_tracks_of_each(settings):
    """`--genre rock --genre jazz` (and the site's genre chips) keep the tracks of either genre:
    the union, not the first genre's or the tracks of both."""
    from mirsearch.schema import Track

    engine = Engine(settings)
    with engine.catalog.session() as session, session.begin():
        tracks = {
            genre: Track(path=f"/music/{genre}.flac", status="indexed", genre=genre)
            for genre in ("rock", "jazz", "pop")
        }
        session.add_all(tracks.values())
    ids = {genre: track.id for genre, track in tracks.items()}
    assert engine.allowed_tracks(["rock", "jazz"]) == {ids["rock"], ids["jazz"]}
    assert engine.allowed_tracks(["jazz", "rock", "jazz"]) == {ids["rock"], ids["jazz"]}


def test_a_blank_genre_is_no_filter_and_an_unknown_one_names_the_common_few(settings):
    """`--genre ""` was an unknown genre on the CLI while the site took it as no choice; an
    unknown genre's message listed every genre of the catalog, a wall of hundreds of tags."""
    from mirsearch.schema import Track

    engine = Engine(settings)
    with engine.catalog.session() as session, session.begin():
        for n in range(40):
            session.add(Track(path=f"/music/{n}.flac", status="indexed", tag_genre=f"g{n:02d}"))
    assert engine.allowed_tracks(["", "  "]) is None
    with pytest.raises(InvalidParameterError) as refused:
        engine.allowed_tracks(["polka"])
    assert str(refused.value).endswith(", g29 and 10 more (`mirsearch genres`)")


def test_a_genre_the_listing_refuses_is_refused_before_the_clip_is_read(settings):
    """As `tracks --genre` refuses it: `search --genre` had kept every track with a tag genre."""
    from mirsearch.schema import Track

    engine = Engine(settings)
    with engine.catalog.session() as session, session.begin():
        session.add(Track(path="/music/a.flac", status="indexed", tag_genre="jazz"))
    with pytest.raises(InvalidParameterError, match="genre cannot hold a NUL character"):
        engine.search(Path("/no/such/clip.wav"), genres=["jazz", "\x00"])
    with pytest.raises(InvalidParameterError, match="genre is at most 1,000 characters"):
        engine.search(Path("/no/such/clip.wav"), genres=["g" * 1_001])  # had been taken


def test_a_clip_with_a_silent_lead_in_finds_its_track_as_the_music_alone_does(
    settings, demo, tmp_path
):
    """The lead-in's windows are left out of the ranking (they had matched nothing and lowered
    the clip's own track to ~0.8) and the hit's offset still counts from the clip's start."""
    engine = Engine(settings)
    engine.index_paths([demo[0].parent])
    music = load(demo[1]).samples[10 * 16_000 : 20 * 16_000]
    plain = write(tmp_path / "plain.wav", music, 16_000)
    led = write(
        tmp_path / "led.wav", np.concatenate([np.zeros(4 * 16_000, np.float32), music]), 16_000
    )
    alone, after_silence = engine.search(plain, k=1)[0], engine.search(led, k=1)[0]
    assert alone.path == after_silence.path == str(demo[1].resolve())
    assert after_silence.score >= alone.score - 0.03
    assert after_silence.offset_s == pytest.approx(alone.offset_s - 4.0, abs=0.5)


def test_match_refuses_a_clip_too_short_to_confirm_a_duplicate_in(settings, demo, tmp_path):
    """3-4 s clips had been accepted and answered "no duplicate" whatever they held: the check
    needs min_windows query windows. Search still takes them."""
    engine = Engine(settings)
    engine.index_paths([demo[0].parent])
    music = load(demo[1]).samples
    short = write(tmp_path / "short.wav", music[10 * 16_000 : 13 * 16_000 + 8_000], 16_000)
    long_enough = write(tmp_path / "long.wav", music[10 * 16_000 : 14 * 16_000], 16_000)
    with pytest.raises(TooShortError, match="3.50 s long; .* at least 4 s"):
        engine.match(short)
    assert engine.search(short, k=1)[0].path == str(demo[1].resolve())
    assert [m.path for m in engine.match(long_enough)][:1] == [str(demo[1].resolve())]


def test_a_query_with_less_than_3_s_of_sound_is_refused_whatever_its_length(
    settings, demo, tmp_path
):
    """2 s of music after 8 s of digital silence had passed the 3 s minimum on its length and
    been ranked on those 2 s, where the bare 2 s is refused; classify still takes it."""
    engine = Engine(settings)
    engine.index_paths([demo[0].parent])
    music = load(demo[1]).samples[10 * 16_000 : 12 * 16_000]
    led = write(
        tmp_path / "led.wav", np.concatenate([np.zeros(8 * 16_000, np.float32), music]), 16_000
    )
    for query in (engine.search, engine.examine):
        with pytest.raises(TooShortError, match="only 2.0 s of the clip is sound; .* 3 s of"):
            query(led)
    assert engine.classify(led, similar_k=1).genre in engine.embedder.labels


def test_a_classify_timeline_gives_a_genre_to_the_windows_with_sound_only(settings, tmp_path):
    music = tone(220.0, 8.0) + tone(330.0, 8.0)
    path = write(
        tmp_path / "led.wav", np.concatenate([np.zeros(4 * 16_000, np.float32), music]), 16_000
    )
    timeline = Engine(settings).classify(path, similar_k=0, timeline=True).timeline
    assert timeline[0]["offset_s"] == 4.0  # the windows before lie in the lead-in, wholly or partly
    assert [w["offset_s"] for w in timeline] == [4.0 + 0.5 * i for i in range(len(timeline))]
    assert timeline[-1]["offset_s"] >= 8.5


def test_a_catalog_file_classified_is_not_listed_as_similar_to_itself(settings, demo, tmp_path):
    """Its own track (and an exact copy's, of the same bytes) had come first at ~1.0; the other
    tracks are listed, as many as asked for where the catalog holds them."""
    engine = Engine(settings)
    engine.index_paths([demo[0].parent])
    rows = {Path(t.path).name: t.id for t in engine.catalog.list_tracks()[0]}
    copy = shutil.copy(demo[0], tmp_path / f"copy{demo[0].suffix}")
    for path in (demo[0], copy):
        similar = [r.track_id for r in engine.classify(path, similar_k=2).similar]
        assert sorted(similar) == sorted(set(rows.values()) - {rows[demo[0].name]})
    other = np.concatenate([load(demo[1]).samples, np.zeros(1600, np.float32)])
    other_bytes = write(tmp_path / "other.wav", other, 16_000)
    assert len(engine.classify(other_bytes, similar_k=3).similar) == 3


def test_a_track_id_past_the_catalogs_integers_is_not_found(db_settings):
    """tracks.id is 32 bits on PostgreSQL: 2**31 had been its 'integer out of range', a
    traceback on the command line and a 500 on the site."""
    engine = Engine(db_settings)
    engine.catalog.migrate()
    for track_id in (2**31, 2**63):
        with pytest.raises(NotFoundError, match=f"no track with id {track_id}"):
            engine.track(track_id)


def test_match_reads_a_file_of_many_sound_tracks_a_few_streams_deep(settings, demo, tmp_path):
    """A video's other sound tracks are matched too, MAX_STREAMS at most: catalog music on its
    third is found, on its sixth unheard, and no stream past the fourth is decoded (600 streams
    in 709 KB had held a server worker 44 s)."""
    engine = Engine(settings)
    engine.index_paths([demo[0].parent])
    music = [load(path).samples[10 * 16_000 : 22 * 16_000] for path in demo[:2]]
    hum = tone(110.0, 12.0)
    read = []
    decoded_query = engine._decoded_query

    def counted(path, **kwargs):
        read.append(kwargs.get("stream"))
        return decoded_query(path, **kwargs)

    engine._decoded_query = counted
    third = write_video(tmp_path / "third.mkv", [hum, hum, music[0]], video_s=1.0)
    assert [m.path for m in engine.match(third)] == [str(demo[0].resolve())]
    read.clear()
    sixth = write_video(tmp_path / "sixth.mkv", [hum] * 5 + [music[1]], video_s=1.0)
    assert engine.match(sixth) == []
    assert max(s for s in read if s is not None) == audio.MAX_STREAMS - 1


def test_music_on_two_sound_tracks_of_a_video_is_told_where_the_one_played_holds_it(
    settings, demo, tmp_path
):
    """The same catalog track on a video's two sound tracks (a dub and the original, cut
    differently): the match told is the one in the sound track a player plays, the other
    track's adding none."""
    engine = Engine(settings)
    engine.index_paths([demo[0].parent])
    song = load(demo[0]).samples
    played, dub = song[10 * 16_000 : 22 * 16_000], song[16 * 16_000 : 28 * 16_000]
    video = write_video(tmp_path / "dubbed.mkv", [dub, played], video_s=1.0, default=1)
    (match,) = engine.match(video)
    assert match.path == str(demo[0].resolve())
    assert match.track_offset_s == pytest.approx(10.0, abs=0.2)


def test_a_catalog_track_under_the_end_of_another_is_listed_where_it_sounds(
    settings, demo, tmp_path
):
    """20 s of one demo track with 6 s of another 12 dB under its last 6 s: both listed, the
    second at 14 s of the upload and 8 s of its track."""
    engine = Engine(settings)
    engine.index_paths([demo[0].parent])
    upload = load(demo[0]).samples[2 * 16_000 : 22 * 16_000].copy()
    under = load(demo[1]).samples[8 * 16_000 : 14 * 16_000]
    end = upload[14 * 16_000 :]
    end += under * np.sqrt(np.mean(end**2) / np.mean(under**2)) * 10 ** (-12 / 20)
    path = write(tmp_path / "under.wav", upload / max(1.0, np.abs(upload).max()), 16_000)
    found = {Path(m.path).name: m for m in engine.match(path)}
    assert set(found) == {demo[0].name, demo[1].name}
    assert found[demo[1].name].query_offset_s == pytest.approx(14.0, abs=0.5)
    assert found[demo[1].name].track_offset_s == pytest.approx(8.0, abs=0.5)


def test_a_catalog_track_mixed_12_db_under_another_is_listed_beside_it(
    settings, demo, tmp_path, monkeypatch
):
    """10 s of one demo track with 10 s of another 12 dB under it: the upload lists both, each
    at its offset, the quieter one found in what is left once the louder is taken out of the
    upload (residual.py); with MIRSEARCH_SECOND_TRACK=0, the louder one alone. A clean copy of
    either is not taken out of itself (nothing else owns its print: the cost spared)."""
    engine = Engine(settings)
    engine.index_paths([demo[0].parent])
    taken_out = []
    rest_of = uploads.rest_of
    monkeypatch.setattr(
        uploads, "rest_of", lambda *args, **kw: taken_out.append(args[1]) or rest_of(*args, **kw)
    )
    loud = load(demo[0]).samples[5 * 16_000 : 15 * 16_000]
    under = load(demo[1]).samples[8 * 16_000 : 18 * 16_000]
    for name, clean in (("loud.wav", loud), ("under.wav", under)):
        assert len(engine.match(write(tmp_path / name, clean, 16_000))) == 1
    assert taken_out == []
    mix = loud + under * np.sqrt(np.mean(loud**2) / np.mean(under**2)) * 10 ** (-12 / 20)
    upload = write(tmp_path / "mixed.wav", mix / max(1.0, np.abs(mix).max()), 16_000)
    found = {Path(m.path).name: m.track_offset_s for m in engine.match(upload)}
    assert found == {
        demo[0].name: pytest.approx(5.0, abs=0.5),
        demo[1].name: pytest.approx(8.0, abs=0.5),
    }
    assert len(taken_out) == 1
    alone = Settings.from_env({"MIRSEARCH_SECOND_TRACK": "0"}, home=settings.home)
    assert alone.duplicates.speed_readings == settings.duplicates.speed_readings
    assert [Path(m.path).name for m in Engine(alone).match(upload)] == [demo[0].name]
    both_off = Settings.from_env({"MIRSEARCH_SECOND_TRACK": "0", "MIRSEARCH_SPEED_READINGS": "0"})
    assert not both_off.duplicates.second_track and both_off.duplicates.speed_readings == ()


def test_a_clip_of_an_original_lists_it_before_its_sped_up_copy(settings, shared_audio, tmp_path):
    """Real music: an original and its copy 5 % fast both indexed (the copy first, so the lower
    id), a clip cut from the original: `match` lists both, the original first at speed 1.0 and
    the copy after it at the speed between them (the held-out clips had listed the other
    version first in 11 of 87)."""
    x = load(shared_audio / "xmoto__batcave.mp3").samples[: 90 * SR]
    fast, _ = audio.played_at(x, 1.05, sample_rate=SR)
    music = tmp_path / "music"
    music.mkdir()
    engine = Engine(settings)
    engine.index_paths([write(music / "copy.wav", fast, SR)])
    engine.index_paths([write(music / "original.wav", x, SR)])
    clip = write(tmp_path / "clip.wav", x[30 * SR : 40 * SR], SR)
    found = engine.match(clip)
    assert [Path(m.path).name for m in found] == ["original.wav", "copy.wav"]
    assert found[0].speed == pytest.approx(1.0, abs=0.005)
    assert found[1].speed == pytest.approx(1 / 1.05, abs=0.01)


def test_similar_leaves_out_the_windows_of_a_track_s_pauses(settings, demo, monkeypatch, tmp_path):
    """`similar` reads a catalog track by the windows indexing found sound (its stored pause
    mask), as a clip is read: a hidden track's minute of silence had made every track with a
    silence alike to it."""
    from mirsearch import api

    paused = write(
        tmp_path / "paused.wav",
        np.concatenate([melody(12.0, seed=3), np.zeros(6 * SR), melody(12.0, seed=4)]),
        SR,
    )
    engine = Engine(settings)
    engine.index_paths([*demo, paused])
    row = next(t for t in engine.catalog.list_tracks()[0] if t.path == str(paused.resolve()))
    stored = engine.catalog.waveform(row.id).sounding(row.n_windows)
    assert 0 < stored.sum() < stored.size  # the pause's windows are marked
    read = []
    similar = api.similar_tracks
    monkeypatch.setattr(
        api, "similar_tracks", lambda *a, **kw: read.append(kw) or similar(*a, **kw)
    )
    assert engine.similar(row.id, k=2)
    np.testing.assert_array_equal(read[0]["sounding"], stored)
