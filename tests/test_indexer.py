"""Indexing a folder (catalog on SQLite and PostgreSQL): bad files recorded as failed,
incremental re-runs, prune, crash safety."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from conftest import tone

from mirsearch.api import Engine
from mirsearch.checkpoints import build, load_checkpoint, save_checkpoint
from mirsearch.demo import FORMATS, NOTE_NAMES, demo_pieces, write_demo_catalog
from mirsearch.errors import IndexMismatchError, ModelError
from mirsearch.files import discover
from mirsearch.index import VectorIndex
from mirsearch.indexer import Indexer
from mirsearch.schema import Track


@pytest.fixture
def settings(db_settings):
    """Every indexing test runs with the catalog on SQLite and on PostgreSQL."""
    return db_settings


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    return write_demo_catalog(tmp_path_factory.mktemp("demo"), n_tracks=4)[0].parent


@pytest.fixture
def folder(tmp_path, demo_dir):
    """The demo tracks plus one file of every bad kind."""
    root = tmp_path / "music"
    shutil.copytree(demo_dir, root)
    (root / "empty.mp3").write_bytes(b"")
    (root / "text.mp3").write_text("these are liner notes, not audio\n" * 20)
    (root / "notes.txt").write_text("ignored: neither an audio name nor audio content")
    truncated = (root / "demo-01.flac").read_bytes()
    (root / "truncated.flac").write_bytes(truncated[: len(truncated) // 3])
    from mirsearch.encoding import write

    write(root / "silent.wav", np.zeros(16_000 * 5, dtype=np.float32), 16_000)
    write(root / "short.wav", tone(440.0, 0.5), 16_000)
    return root


def rows(engine: Engine) -> dict[str, Track]:
    tracks, _ = engine.catalog.list_tracks(status=None, per_page=1000)
    return {os.path.basename(t.path): t for t in tracks}


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
    assert_demo_tempo_and_key(by_name)
    assert by_name["demo-01.flac"].title == "Demo 1"
    assert engine.index().n_tracks == 5
    prints = engine.catalog.prints(t.id for t in by_name.values())
    assert set(prints) == {t.id for t in indexed}  # every indexed track has its print, no other
    for t in indexed:  # one frame every 1/32 s (a track shorter than a window is padded to 3 s)
        assert prints[t.id].shape[1] == pytest.approx(max(t.duration_s, 3.0) * 32, abs=2)


def assert_demo_tempo_and_key(by_name: dict[str, Track]) -> None:
    """The demo tracks' tempo and key are known by construction (mirsearch/demo.py).

    Measured on the four: tempo right for three and doubled for the 74 BPM one (an octave
    error beat trackers make); key right for three, the relative minor for C major (same notes).
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
    assert at_tempo >= 3 and in_key >= 3, (at_tempo, in_key)


def test_second_run_changes_nothing_and_changed_files_are_redone(settings, folder):
    engine = Engine(settings)
    engine.index_paths([folder])
    again = engine.index_paths([folder])
    assert (again.indexed, again.failed, again.unchanged) == (0, 0, 9)
    os.utime(folder / "demo-02.ogg")  # touched, same content: still unchanged
    (folder / "demo-04.wav").unlink()
    from mirsearch.audio import load
    from mirsearch.encoding import write

    write(folder / "demo-04.wav", load(folder / "demo-01.flac").samples[::-1].copy(), 16_000)
    before = rows(engine)["demo-04.wav"].sha256
    third = engine.index_paths([folder])
    assert third.indexed == 1 and third.unchanged == 8
    assert rows(engine)["demo-04.wav"].sha256 != before


def test_a_file_that_breaks_on_re_index_keeps_nothing_of_its_old_audio(settings, folder):
    """Its vectors, print and duplicate flag described audio that is gone: none of them stay."""
    engine = Engine(settings)
    engine.index_paths([folder])
    shutil.copy(folder / "demo-01.flac", folder / "copy.flac")
    engine.index_paths([folder])
    copy = rows(engine)["copy.flac"]
    assert copy.duplicate_of == rows(engine)["demo-01.flac"].id
    assert copy.id in engine.catalog.prints([copy.id])
    (folder / "copy.flac").write_bytes(b"not audio any more" * 100)
    summary = engine.index_paths([folder])
    broken = rows(engine)["copy.flac"]
    assert summary.failed == 1 and broken.status == "failed"
    assert broken.duplicate_of is None and broken.duplicate_evidence is None
    assert engine.catalog.prints([broken.id]) == {}
    assert not engine.index().contains(broken.id)


def test_prune_removes_rows_and_vectors_of_deleted_files(settings, folder):
    engine = Engine(settings)
    engine.index_paths([folder])
    gone = rows(engine)["demo-02.ogg"].id
    (folder / "demo-02.ogg").unlink()
    summary = engine.index_paths([folder], prune=True)
    assert summary.removed == 1
    assert "demo-02.ogg" not in rows(engine)
    assert not engine.index().contains(gone)


def test_a_moved_or_renamed_file_keeps_its_track_and_is_not_embedded_again(settings, folder):
    """A catalog reorganised on disk: each moved file's row follows it (same id, vectors, genre),
    nothing is analysed or flagged as a duplicate of its old self, and `--prune` has nothing to
    remove. A copy whose original is still there is a new track; one old file's content found
    twice moves once."""
    engine = Engine(settings)
    engine.index_paths([folder])
    before = rows(engine)
    (folder / "album").mkdir()
    (folder / "demo-01.flac").rename(folder / "album" / "first.flac")
    (folder / "demo-02.ogg").rename(folder / "album" / "second.ogg")
    shutil.copy(folder / "album" / "second.ogg", folder / "second-again.ogg")
    shutil.copy(folder / "demo-03.mp3", folder / "third-copy.mp3")
    summary = engine.index_paths([folder], prune=True)
    after = rows(engine)
    assert (summary.moved, summary.removed, summary.unchanged) == (2, 0, 7)
    assert summary.indexed == 2 and summary.duplicates == 2  # the two copies
    for old, new in (("demo-01.flac", "first.flac"), ("demo-02.ogg", "second.ogg")):
        assert old not in after
        assert after[new].id == before[old].id and after[new].genre == before[old].genre
        assert after[new].path == str((folder / "album" / new).resolve())
        assert after[new].duplicate_of is None
        assert engine.index().contains(after[new].id)
    assert after["second-again.ogg"].duplicate_of == before["demo-02.ogg"].id
    assert after["third-copy.mp3"].duplicate_of == before["demo-03.mp3"].id
    again = engine.index_paths([folder])
    assert (again.indexed, again.moved, again.unchanged) == (0, 0, 11)


def test_default_workers_are_one_per_core_but_no_more_than_files(settings, folder, monkeypatch):
    import mirsearch.indexer

    asked = []

    def analyse_all(paths, settings, *, workers, engine, address, ahead):
        asked.append((len(paths), workers))
        return iter(())

    monkeypatch.setattr(mirsearch.indexer, "analyse_all", analyse_all)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    Indexer(settings).run([folder])
    Indexer(settings).run([sorted(folder.iterdir())[0]])
    n_files = len(discover([folder]))
    assert asked == [(n_files, min(64, n_files)), (1, 1)]


DECODING_AHEAD = """
import logging
import sys
from pathlib import Path

from mirsearch.api import Engine
from mirsearch.config import Settings

logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
engine = Engine(Settings.from_env({}, home=Path(sys.argv[1])))
print(engine.index_paths([sys.argv[2]], workers=2).indexed)
"""


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="decoding ahead needs a second core")
def test_the_first_files_are_decoded_while_torch_loads(folder, tmp_path):
    """A run in a process without torch (the CLI's) decodes its first files on another core
    while torch loads, and the workers read them decoded. (It used to stop the decoding before
    torch was imported, when the generator analysing the files was made: 0 files.)"""
    done = subprocess.run(
        [sys.executable, "-c", DECODING_AHEAD, tmp_path / "home", folder],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    decoded = re.search(r"(\d+) files decoded while torch loaded", done.stderr)
    assert decoded and int(decoded.group(1)) >= 1, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) >= 1


def test_workers_give_the_same_vectors_as_one_process(settings, folder, tmp_path):
    from mirsearch.config import Settings

    one = Engine(settings)
    one.index_paths([folder], workers=1)
    two = Engine(Settings.from_env({}, home=tmp_path / "two"))
    two.index_paths([folder], workers=2)
    a, b = rows(one), rows(two)
    assert {k: v.status for k, v in a.items()} == {k: v.status for k, v in b.items()}
    for name, row in a.items():
        if row.status == "indexed":
            np.testing.assert_array_equal(
                one.index().track_windows(row.id), two.index().track_windows(b[name].id)
            )


def test_the_main_process_commits_on_one_thread_while_workers_fill_the_cores(
    settings, demo_dir, monkeypatch
):
    """The duplicate check's search and prints run in the main process beside the workers: on
    one thread of numpy's BLAS and of OpenMP (FAISS), not one a core; back as they were after."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from mirsearch.indexer import Indexer

    def pools() -> dict[str, int]:
        return {i["user_api"]: i["num_threads"] for i in threadpool_info()}

    seen, commit = [], Indexer._commit

    def spy(self, *args, **kwargs):
        seen.append(pools())
        return commit(self, *args, **kwargs)

    monkeypatch.setattr(Indexer, "_commit", spy)
    with threadpool_limits(limits=2):  # as on a 2-core machine; as they were afterwards
        before = pools()
        Engine(settings).index_paths([demo_dir], workers=2)
        assert seen and all(set(threads.values()) == {1} for threads in seen)
        assert pools() == before


def test_a_crash_while_committing_leaves_catalog_and_index_agreeing(settings, folder, monkeypatch):
    engine = Engine(settings)
    engine.index_paths([folder / "demo-01.flac"])
    generation = engine.catalog.index_state().generation

    def crash(self, directory, generation, **options):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(VectorIndex, "save", crash)
    with pytest.raises(OSError):
        Indexer(settings, catalog=engine.catalog).run([folder])
    monkeypatch.undo()
    assert engine.catalog.index_state().generation == generation
    indexed = [t for t in rows(engine).values() if t.status == "indexed"]
    assert [os.path.basename(t.path) for t in indexed] == ["demo-01.flac"]
    assert engine.index().n_tracks == 1
    resumed = engine.index_paths([folder])
    assert resumed.indexed == 4 and resumed.unchanged == 1
    assert engine.index().n_tracks == 5


def test_a_model_change_embeds_every_track_again(settings, folder, monkeypatch):
    engine = Engine(settings)
    engine.index_paths([folder])
    from mirsearch.schema import IndexState

    with engine.catalog.session() as session, session.begin():
        session.get(IndexState, 1).model_hash = "an older model"
    summary = Engine(settings).index_paths([folder])
    assert summary.indexed == 5 and summary.unchanged == 4


def test_a_model_that_cannot_load_leaves_the_catalog_as_it_was(settings, folder, tmp_path):
    engine = Engine(settings)
    first = engine.index_paths([folder])
    before = engine.catalog.index_state()
    features = asdict(load_checkpoint().card.feature_config)
    broken = save_checkpoint(  # its card reads, its weights fit no network
        tmp_path / "broken.pt",
        model=build("cnn", n_classes=3, feature_config=features),
        arch="cnn",
        arch_args={"n_classes": 5, "feature_config": features},
        labels=list("abcde"),
        window_s=3.0,
    )
    with pytest.raises(ModelError, match="weights do not fit"):
        Engine(dataclasses.replace(settings, model_path=broken)).index_paths([folder])
    after = Engine(settings)
    assert after.catalog.index_state().generation == before.generation
    assert after.catalog.index_state().model_hash == before.model_hash
    assert after.index_paths([folder]).unchanged == first.indexed + first.failed


def test_a_new_calibration_reaches_the_index_without_embedding_again(settings, folder, monkeypatch):
    Engine(settings).index_paths([folder])
    monkeypatch.setattr("mirsearch.indexer.calibrated_threshold", lambda *a, **k: 0.4321)
    summary = Engine(settings).index_paths([folder])
    assert summary.indexed == 0 and summary.unchanged == 9
    assert Engine(settings).index().meta.match_threshold == 0.4321


def test_match_decides_with_the_threshold_of_this_code_not_the_one_the_index_recorded(
    settings, folder, monkeypatch
):
    """Scoring code and calibration change together; an index saved before keeps the old
    threshold until `mirsearch index` runs again, and `match` must not use it meanwhile."""
    Engine(settings).index_paths([folder])
    clip = next(folder.glob("*.ogg"))
    assert [Path(m.path).name for m in Engine(settings).match(clip)] == [clip.name]
    monkeypatch.setattr("mirsearch.resources.calibrated_threshold", lambda *a, **k: 1.01)
    engine = Engine(settings)
    assert engine.index().meta.match_threshold < 1.0
    assert engine.match(clip) == []


def test_files_that_cannot_be_read_or_named_never_stop_the_run(settings, folder, monkeypatch):
    """One unreadable file (permissions: faked, as tests may run as root) is recorded as failed
    and tried again next run; a dangling link is no audio; a name that is not UTF-8 cannot be
    stored and is left out with a warning. Each had stopped the whole run with a traceback."""
    import mirsearch.analysis

    (folder / "gone.ogg").symlink_to(folder / "nowhere.ogg")
    (folder / os.fsdecode(b"bad\xffname.ogg")).write_bytes((folder / "demo-02.ogg").read_bytes())
    hashed = mirsearch.analysis.file_sha256

    def locked(path):
        if Path(path).name == "demo-01.flac":
            raise PermissionError(13, "Permission denied", str(path))
        return hashed(path)

    monkeypatch.setattr(mirsearch.analysis, "file_sha256", locked)
    summary = Indexer(settings).run([folder], workers=1)
    by_name = rows(Engine(settings))
    assert summary.indexed == 4 and summary.failed == 5  # the four bad files + the locked one
    assert "cannot be read (Permission denied)" in by_name["demo-01.flac"].error
    assert "gone.ogg" not in by_name and not any("name" in n for n in by_name)
    monkeypatch.undo()
    again = Indexer(settings).run([folder], workers=1)
    assert again.indexed == 1 and rows(Engine(settings))["demo-01.flac"].status == "indexed"


def test_an_indexing_run_waits_for_the_one_writing_the_catalog(settings, demo_dir, tmp_path):
    """Two `mirsearch index` at once on one home, each its own folder: both tracks of each are
    in the index the catalog names (two runs had each saved the index it loaded, the last one
    losing the other's vectors)."""
    folders = []
    for name, tracks in (("one", ["demo-01.flac", "demo-02.ogg"]), ("two", ["demo-03.mp3"])):
        (tmp_path / name).mkdir()
        for track in tracks:
            shutil.copy(demo_dir / track, tmp_path / name / track)
        folders.append(tmp_path / name)
    env = os.environ | {"MIRSEARCH_HOME": str(settings.home)}
    if settings.database_url:
        env["MIRSEARCH_DATABASE_URL"] = settings.database_url
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", "from mirsearch.cli import run; run()", "index", str(f)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for f in folders
    ]
    told = [run.communicate(timeout=300)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], told
    engine = Engine(settings)
    indexed = {t.id for t in rows(engine).values() if t.status == "indexed"}
    assert len(indexed) == 3 and all(engine.index().contains(t) for t in indexed)
    assert engine.index().n_tracks == 3


def test_a_generation_another_run_wrote_stops_a_run_before_it_writes_over_it(settings, folder):
    """Runs on machines that share the catalog (not the lock file): the second to commit sees
    a generation it did not load and rolls its batch back."""
    first = Indexer(settings)
    index = first._open_index(first._expected_meta())
    Indexer(settings).run([folder / "demo-01.flac"], workers=1)
    stopped = pytest.raises(IndexMismatchError, match="another indexing run committed generation")
    with stopped, first._generation(index, index.meta.model_hash):
        pass
    engine = Engine(settings)
    assert engine.index().n_tracks == 1 and engine.catalog.index_state().generation == 2


def test_a_track_that_lost_its_print_or_tags_is_analysed_again(settings, folder):
    """What a schema downgrade drops (prints, tags) an upgrade brings back empty: the next run
    analyses those tracks again rather than calling them unchanged."""
    from sqlalchemy import delete, update

    from mirsearch.schema import TrackPrint

    engine = Engine(settings)
    first = engine.index_paths([folder])
    by_name = rows(engine)
    with engine.catalog.session() as session, session.begin():
        session.execute(delete(TrackPrint).where(TrackPrint.track_id == by_name["demo-01.flac"].id))
        session.execute(
            update(Track).where(Track.id == by_name["demo-02.ogg"].id).values(tags=None)
        )
    again = engine.index_paths([folder])
    assert again.indexed == 2 and again.unchanged == first.indexed + first.failed - 2
    by_name = rows(engine)
    assert by_name["demo-01.flac"].id in engine.catalog.prints([by_name["demo-01.flac"].id])
    assert by_name["demo-02.ogg"].tags
    assert engine.index_paths([folder]).indexed == 0


def test_an_index_folder_another_catalog_wrote_is_refused_then_rebuilt(settings, folder, tmp_path):
    """A MIRSEARCH_DATABASE_URL pointed at another database, the home kept: that catalog writes
    its generations into this one's index folder. This catalog's queries are refused (they had
    read the other's vectors under its own track ids) and its next run embeds again."""
    Engine(settings).index_paths([folder / "demo-01.flac"])
    other = dataclasses.replace(settings, database_url=f"sqlite:///{tmp_path / 'other.db'}")
    Engine(other).index_paths([folder / "demo-02.ogg"])
    with pytest.raises(IndexMismatchError, match="written for another catalog database"):
        Engine(settings).search(folder / "demo-01.flac", k=1)
    assert Engine(settings).index_paths([folder / "demo-01.flac"]).indexed == 1
    hit = Engine(settings).search(folder / "demo-01.flac", k=1)[0]
    assert Path(hit.path).name == "demo-01.flac"
