"""Indexing runs (catalog on SQLite and PostgreSQL): prune, workers, decoding ahead, crash
safety, model and calibration changes, runs that meet on one catalog."""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from conftest import SR, rows

from mirsearch.analysis import file_sha256
from mirsearch.api import Engine
from mirsearch.audio import load
from mirsearch.catalog import Catalog
from mirsearch.checkpoints import build, load_checkpoint, save_checkpoint
from mirsearch.config import Settings
from mirsearch.encoding import write
from mirsearch.errors import AudioError, CatalogError, IndexMismatchError, ModelError
from mirsearch.files import discover
from mirsearch.index import VectorIndex
from mirsearch.indexer import Indexer


@pytest.fixture
def settings(db_settings):
    """Every indexing test runs with the catalog on SQLite and on PostgreSQL."""
    return db_settings


def test_prune_removes_rows_and_vectors_of_deleted_files(settings, folder):
    """A run without --prune counts the tracks whose file is gone (a run had said nothing of
    them while `match` still named their paths); a prune drops them, and only under the folders
    named: not in a sibling folder whose name begins with one's (`music` and `music-old`)."""
    engine = Engine(settings)
    sibling = folder.with_name(folder.name + "-old")
    sibling.mkdir()
    shutil.copy(folder / "demo-01.flac", sibling / "old.flac")
    engine.index_paths([folder, sibling])
    gone = rows(engine)["demo-02.ogg"].id
    (folder / "demo-02.ogg").unlink()
    (sibling / "old.flac").unlink()
    kept = engine.index_paths([folder])  # counted and said, not dropped: queries still name it
    assert (kept.missing, kept.removed) == (1, 0) and kept.to_dict()["missing"] == 1
    assert engine.index().contains(gone)
    summary = engine.index_paths([folder], prune=True)
    assert (summary.removed, summary.missing) == (1, 0)
    assert "demo-02.ogg" not in rows(engine) and "old.flac" in rows(engine)
    assert not engine.index().contains(gone)


def test_a_file_replaced_by_a_folder_or_a_fifo_is_gone_and_pruned(settings, folder):
    """No regular file at a track's path is a file gone: a folder or a FIFO in its place is
    counted missing, and a prune drops its track (a FIFO's had stayed indexed, uncounted)."""
    engine = Engine(settings)
    engine.index_paths([folder])
    named = rows(engine)
    (folder / "demo-02.ogg").unlink()
    os.mkfifo(folder / "demo-02.ogg")
    (folder / "demo-03.mp3").unlink()
    (folder / "demo-03.mp3").mkdir()
    kept = engine.index_paths([folder])
    assert (kept.missing, kept.removed) == (2, 0)
    summary = engine.index_paths([folder], prune=True)
    assert (summary.removed, summary.missing) == (2, 0)
    assert {"demo-02.ogg", "demo-03.mp3"}.isdisjoint(rows(engine))
    assert not engine.index().contains(named["demo-02.ogg"].id)


def test_a_track_pruned_last_keeps_its_id_from_the_next_new_track(settings, folder):
    """SQLite gives a new row the highest id plus one: the id of the track pruned last had gone
    to the next new track, and a reference a client kept to the old one named another song."""
    engine = Engine(settings)
    engine.index_paths([folder])
    last = max(rows(engine).values(), key=lambda row: row.id)
    Path(last.path).unlink()
    assert engine.index_paths([folder], prune=True).removed == 1
    shutil.copy(folder / "demo-02.ogg", folder / "new-file.ogg")
    assert engine.index_paths([folder]).indexed == 1
    assert rows(engine)["new-file.ogg"].id == last.id + 1


def test_prune_of_a_folder_deleted_whole_removes_its_tracks(settings, folder, tmp_path):
    """A folder that is gone could not be named to prune it ("no such file or folder"), so its
    tracks stayed in the catalog for good; without --prune, the refusal says to prune (it had
    said "no such file or folder" alone); a missing path the catalog holds nothing under is
    still refused, a prune or not."""
    engine = Engine(settings)
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(folder / "demo-01.flac", other / "kept.flac")
    engine.index_paths([folder, other])
    held = len(rows(engine)) - 1
    shutil.rmtree(folder)
    with pytest.raises(
        AudioError,
        match=f"^{folder}: no such file or folder, and the catalog "
        "holds tracks under it: run with --prune to drop them",
    ):
        engine.index_paths([folder, other])  # it had not said why the tracks were kept
    assert len(rows(engine)) == held + 1
    summary = engine.index_paths([folder, other], prune=True)
    assert summary.removed == held > 0
    assert set(rows(engine)) == {"kept.flac"}
    with pytest.raises(AudioError, match="no such file or folder"):
        engine.index_paths([tmp_path / "typo"], prune=True)
    with pytest.raises(AudioError, match="no such file or folder"):
        engine.index_paths([folder])


def _raise(exc: Exception):
    raise exc


def test_an_index_save_that_fails_commits_nothing_and_says_to_run_again(
    settings, folder, monkeypatch
):
    engine = Engine(settings)
    engine.index_paths([folder / "demo-01.flac"])
    before = engine.catalog.stats()

    def failing(errno_of_it: int):
        def save(self, directory, generation, **kwargs):
            failed = OSError(f"cannot write {directory}/windows-{generation}.faiss: why")
            failed.errno = errno_of_it
            raise failed

        return save

    advice = {
        errno.ENOSPC: "make room and run `mirsearch index` again",
        errno.EACCES: "run `mirsearch index` again once the index folder can be written",
    }
    for errno_of_it, what_to_do in advice.items():  # room advised for a full disk only
        with monkeypatch.context() as patched:
            patched.setattr(VectorIndex, "save", failing(errno_of_it))
            with pytest.raises(OSError, match="this batch was not committed") as raised:
                Engine(settings).index_paths([folder])
        assert str(raised.value).endswith(what_to_do)
    with monkeypatch.context() as patched:  # the commit itself failing: said so too
        patched.setattr(VectorIndex, "save", lambda *a, **kw: _raise(CatalogError("disk full")))
        with pytest.raises(CatalogError, match="disk full; this batch was not committed"):
            Engine(settings).index_paths([folder])
    assert Engine(settings).catalog.stats() == before
    again = Engine(settings).index_paths([folder])  # the bad files of `folder` fail
    assert again.unchanged == 1 and again.indexed + again.failed == len(discover([folder])) - 1


def test_an_indexed_sqlite_catalog_is_whole_in_its_file(folder, tmp_path):
    """The rows had lived in catalog.db-wal (a command leaves without closing its connections):
    a backup of catalog.db alone, or a reader on a read-only volume, found no catalog."""
    engine = Engine(Settings.from_env({}, home=tmp_path / "home"))
    engine.index_paths([folder])
    backup = tmp_path / "backup"
    backup.mkdir()
    shutil.copy(engine.catalog.file, backup / "catalog.db")
    copied = Catalog(f"sqlite:///{backup / 'catalog.db'}", create=False)
    assert copied.stats()["indexed"] == engine.catalog.stats()["indexed"] > 0


def test_a_run_on_some_folders_of_a_new_index_names_the_tracks_left_out(
    settings, folder, demo_dir, tmp_path, caplog
):
    """A damaged index is made anew, every track marked to be analysed again: a run on one of
    the catalog's two folders had left the other's tracks unsearchable without a word."""
    other = tmp_path / "other"
    other.mkdir()
    for name in ("demo-01.flac", "demo-02.ogg"):
        shutil.copy(demo_dir / name, other / f"other-{name}")
    engine = Engine(settings)
    engine.index_paths([folder / "demo-03.mp3", other])
    generation = engine.catalog.index_state().generation
    (settings.index_dir / f"windows-{generation}.faiss").write_bytes(b"damaged")
    with caplog.at_level("WARNING", logger="mirsearch.indexer"):
        Engine(settings).index_paths([folder / "demo-03.mp3"])
    assert "2 tracks of the catalog wait to be analysed again" in caplog.text


def test_prune_takes_a_deleted_track_off_its_copies_duplicate_flags(settings, folder):
    """The copy's flag and evidence had gone on naming the deleted track."""
    shutil.copy(folder / "demo-02.ogg", folder / "zz-copy.ogg")
    engine = Engine(settings)
    engine.index_paths([folder])
    original = rows(engine)["demo-02.ogg"].id
    assert rows(engine)["zz-copy.ogg"].duplicate_of == original
    (folder / "demo-02.ogg").unlink()
    engine.index_paths([folder], prune=True)
    copy = rows(engine)["zz-copy.ogg"]
    assert copy.duplicate_of is None and not copy.duplicate_evidence


def test_a_copy_whose_version_is_pruned_is_flagged_on_the_next_one_that_still_holds(
    settings, folder
):
    """A track matching four versions keeps them closest first: when the first is pruned, its
    flag goes to the closest left whose content is still what it was matched with (the second
    got other music since), and its evidence keeps the two that still hold, in order."""
    for name in ("zz-a.ogg", "zz-b.ogg", "zz-c.ogg", "zz-d.ogg"):
        shutil.copy(folder / "demo-02.ogg", folder / name)
    engine = Engine(settings)
    engine.index_paths([folder])
    by_id = {row.id: row for row in rows(engine).values()}
    evidence = rows(engine)["zz-d.ogg"].duplicate_evidence
    first, changed, *held = (Path(by_id[m["track_id"]].path) for m in evidence)
    shutil.copy(folder / "demo-01.flac", changed.with_suffix(".flac"))
    changed.with_suffix(".flac").replace(changed)  # other music under the same name
    engine.index_paths([folder])  # analysed again; the copy is still flagged on the first
    assert rows(engine)["zz-d.ogg"].duplicate_of == rows(engine)[first.name].id
    first.unlink()
    engine.index_paths([folder], prune=True)
    copy, held_ids = rows(engine)["zz-d.ogg"], [rows(engine)[p.name].id for p in held]
    assert len(held_ids) == 2 and copy.duplicate_of == held_ids[0]
    assert [m["track_id"] for m in copy.duplicate_evidence] == held_ids


@pytest.fixture(scope="module")
def pieces(shared_audio, tmp_path_factory) -> dict[str, Path]:
    """40 s of two real pieces as FLAC ("lego", "fox"), and the Legolodio excerpt as an MP3
    ("lego-mp3"): a copy a little less like it than a copy of its bytes is."""
    folder = tmp_path_factory.mktemp("pieces")
    lego = load(shared_audio / "xmoto__legolodio.ogg").samples[20 * SR : 60 * SR]
    fox = load(shared_audio / "xmoto__foxrun.ogg").samples[20 * SR : 60 * SR]
    return {
        "lego": write(folder / "lego.flac", lego, SR),
        "fox": write(folder / "fox.flac", fox, SR),
        "lego-mp3": write(folder / "lego.mp3", lego, SR, bit_rate=96_000),
    }


def duplicate_groups(engine: Engine) -> list[list[str]]:
    """The `dupes` groups as file names, having checked that `stats` counts the flags they are
    read from and that `versions` (which `match` asks) links no track outside its group."""
    assert engine.catalog.stats()["duplicates"] == len(engine.catalog.flagged())
    names = {row.id: name for name, row in rows(engine).items() if row.status == "indexed"}
    groups = sorted(sorted(names[t["track_id"]] for t in g["tracks"]) for g in engine.dupes())
    group_of = {name: set(group) for group in groups for name in group}
    for track_id, name in names.items():
        linked = {names[v] for v in engine.catalog.versions([track_id])}
        assert linked <= group_of.get(name, set()) - {name}, (name, linked, groups)
    return groups


def indexed(settings, folder: Path, files: dict[str, Path]) -> Engine:
    """An Engine over `folder` holding copies of `files` (name → piece), indexed."""
    folder.mkdir()
    for name, piece in files.items():
        shutil.copy(piece, folder / name)
    engine = Engine(settings)
    engine.index_paths([folder], workers=1)
    return engine


def test_copies_of_a_track_whose_file_got_other_music_stay_a_group_without_it(
    settings, pieces, tmp_path
):
    """A flag names a track with the content it was matched against: "a.flac" given other
    music had stayed in one group with its two copies, their flags naming it still. Now the
    copies are a group of their own, the new music is grouped with a copy of it analysed after
    it in the same run, and a rebuild (the same content analysed again) keeps both groups."""
    folder = tmp_path / "music"  # c.mp3 is closer to b.mp3 than to a.flac
    files = {"a.flac": pieces["lego"], "b.mp3": pieces["lego-mp3"], "c.mp3": pieces["lego-mp3"]}
    engine = indexed(settings, folder, files)
    assert duplicate_groups(engine) == [["a.flac", "b.mp3", "c.mp3"]]
    shutil.copy(pieces["fox"], folder / "a.flac")
    shutil.copy(pieces["fox"], folder / "d.flac")  # analysed after a.flac's new music
    engine.index_paths([folder], workers=1)
    assert duplicate_groups(engine) == [["a.flac", "d.flac"], ["b.mp3", "c.mp3"]]
    assert engine.catalog.stats()["duplicates"] == 2  # c.mp3 and d.flac
    engine.index_paths([folder], workers=1, rebuild=True)
    assert duplicate_groups(engine) == [["a.flac", "d.flac"], ["b.mp3", "c.mp3"]]


def test_a_track_indexed_after_its_excerpt_is_flagged_as_its_duplicate(
    settings, shared_audio, tmp_path
):
    """Real music: 25 s of a track (from 20 s, off the 1.5 s grid of its windows) indexed first,
    then the whole track. The ingest check's line had begun 1.9 s off (the track's start pinned
    to the first window at speed 0.95), too far for the prints to agree: no flag either way."""
    samples = load(shared_audio / "xmoto__batcave.mp3").samples
    first, then = tmp_path / "excerpt", tmp_path / "whole"
    first.mkdir(), then.mkdir()
    write(first / "excerpt.flac", samples[20 * SR : 45 * SR], SR)
    write(then / "whole.flac", samples, SR)
    engine = Engine(settings)
    engine.index_paths([first])
    assert engine.index_paths([then]).duplicates == 1
    (group,) = engine.dupes()
    assert sorted(Path(t["path"]).name for t in group["tracks"]) == ["excerpt.flac", "whole.flac"]
    (evidence,) = group["evidence"]
    assert evidence["query_offset_s"] == pytest.approx(20.0, abs=0.1)
    assert evidence["speed"] == pytest.approx(1.0, abs=0.005)


def test_two_files_that_swap_names_are_no_duplicates(settings, pieces, tmp_path):
    """The file analysed first had been checked while the index held the other's old vectors
    (its own new music) and stayed flagged as a duplicate of it."""
    folder = tmp_path / "music"
    engine = indexed(settings, folder, {"a.flac": pieces["lego"], "b.flac": pieces["fox"]})
    (folder / "a.flac").rename(folder / "t.flac")
    (folder / "b.flac").rename(folder / "a.flac")
    (folder / "t.flac").rename(folder / "b.flac")
    assert engine.index_paths([folder], workers=1).indexed == 2
    assert duplicate_groups(engine) == []
    assert engine.catalog.stats()["duplicates"] == 0


def test_stats_count_no_flag_on_a_track_that_failed_since(settings, pieces, tmp_path):
    """`stats` had counted the copy's flag on its original whose file no longer reads, which
    `dupes` leaves out."""
    folder = tmp_path / "music"
    engine = indexed(settings, folder, {"a.flac": pieces["lego"], "b.flac": pieces["lego"]})
    assert duplicate_groups(engine) == [["a.flac", "b.flac"]]
    assert engine.catalog.stats()["duplicates"] == 1
    (folder / "a.flac").write_text("these are liner notes, not audio\n" * 20)
    assert engine.index_paths([folder], workers=1).failed == 1
    assert duplicate_groups(engine) == []
    assert engine.catalog.stats()["duplicates"] == 0


def test_prune_keeps_files_the_walk_leaves_out(settings, folder, unlistable):
    """A dot-file indexed by its name, and the files of a folder the walk could not list, are
    still there: only deleted files (or a folder in a file's place) are pruned."""
    (folder / ".hidden").mkdir()
    hidden = folder / ".hidden" / "hidden.ogg"
    shutil.copy(folder / "demo-01.flac", hidden)
    (folder / "locked").mkdir()
    locked = folder / "locked" / "locked.ogg"
    shutil.copy(folder / "demo-03.mp3", locked)
    engine = Engine(settings)
    engine.index_paths([folder, hidden])
    (folder / "demo-02.ogg").unlink()
    (folder / "demo-02.ogg").mkdir()
    unlistable(folder / "locked")
    summary = engine.index_paths([folder], prune=True)
    assert summary.removed == 1
    indexed = {Path(row.path) for row in rows(engine).values()}
    assert {hidden.resolve(), locked.resolve()} <= indexed
    assert (folder / "demo-02.ogg").resolve() not in indexed


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

    from mirsearch.commits import Commits

    def pools() -> dict[str, int]:
        return {i["user_api"]: i["num_threads"] for i in threadpool_info()}

    seen, commit = [], Commits.batch

    def spy(self, *args, **kwargs):
        seen.append(pools())
        return commit(self, *args, **kwargs)

    monkeypatch.setattr(Commits, "batch", spy)
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


@pytest.mark.parametrize("decoded_as", ["the other song", "truncated"])
def test_a_file_replaced_while_it_is_read_is_left_for_the_next_run(
    settings, demo_dir, tmp_path, monkeypatch, caplog, decoded_as
):
    """A sync tool or a re-export renaming a new file over one between its hash and its
    decoding, and back: the other song's vectors had been stored under this one's hash (or a
    healthy file as "truncated"), and every later run called the file unchanged. Now nothing
    of it is recorded, it is said, and the next run indexes it."""
    import mirsearch.audio

    music = tmp_path / "music"
    music.mkdir()
    song, other = music / "song.ogg", demo_dir / "demo-04.wav"  # 36 s and 55 s
    original = (demo_dir / "demo-02.ogg").read_bytes()
    song.write_bytes(original)

    def renamed_over(content: bytes) -> None:
        (tmp_path / "part").write_bytes(content)
        os.replace(tmp_path / "part", song)

    load = mirsearch.audio.load

    def replaced_while_decoded(path, **kwargs):
        renamed_over(other.read_bytes())
        try:
            if decoded_as == "truncated":  # what a file cut short under its decoder gives
                raise AudioError(f"{path}: the file is truncated: decoded 9.0 of 55.0 s")
            return load(path, **kwargs)
        finally:
            renamed_over(original)  # the file holds what was hashed once more

    monkeypatch.setattr(mirsearch.audio, "load", replaced_while_decoded)
    with caplog.at_level("WARNING", logger="mirsearch.records"):
        first = Indexer(settings).run([music], workers=1)
    monkeypatch.undo()
    again = Indexer(settings).run([music], workers=1)
    row = rows(Engine(settings))["song.ogg"]
    assert (row.status, row.error) == ("indexed", None)
    assert row.duration_s == pytest.approx(36.0, abs=0.1)  # this song's, not the other's
    assert row.sha256 == file_sha256(song)
    assert (again.indexed, again.unchanged) == (1, 0)
    assert (first.indexed, first.failed, first.changing) == (0, 0, 1)
    assert first.to_dict()["changing"] == 1
    assert f"{song}: not indexed: the file changed while it was being read" in caplog.text
    assert "run `mirsearch index` again" in caplog.text
    assert Indexer(settings).run([music], workers=1).unchanged == 1


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
    with stopped, first.commits.generation(index, index.meta.model_hash):
        pass
    engine = Engine(settings)
    assert engine.index().n_tracks == 1 and engine.catalog.index_state().generation == 2


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_runs_making_a_new_catalog_s_first_generation_together_stop_one_cleanly(
    settings, folder, monkeypatch
):
    """Two machines' first runs on a new PostgreSQL catalog both found no generation row, which
    locks nothing, and both made it: the second died with UniqueViolation's traceback. (On
    SQLite the first run's writes hold the database: the other waits.)"""
    from sqlalchemy.orm import Session

    from mirsearch.schema import IndexState

    other = Catalog(settings.db_url)
    found = Session.get

    def get(session, entity, ident, **options):  # the other run's row lands just after the read
        state = found(session, entity, ident, **options)
        if entity is IndexState and state is None and options.get("with_for_update"):
            with other.session() as theirs, theirs.begin():
                theirs.add(IndexState(id=1, generation=1, model_hash="theirs"))
        return state

    monkeypatch.setattr(Session, "get", get)
    with pytest.raises(IndexMismatchError, match="another indexing run wrote the same rows"):
        Indexer(settings).run([folder / "demo-01.flac"], workers=1)
    other.close()


def test_a_home_without_the_catalogs_index_is_refused_and_rebuild_analyses_every_track(
    settings, folder, tmp_path
):
    """A second MIRSEARCH_HOME on one catalog database (a PostgreSQL catalog shared by
    machines, one misconfigured) had rebuilt the index into itself: the catalog's own home
    left behind, every track not in that run unsearchable. It is refused; where the index is
    really lost, --rebuild analyses every track again."""
    engine = Engine(settings)
    engine.index_paths([folder])
    indexed = {t.id for t in rows(engine).values() if t.status == "indexed"}
    second = dataclasses.replace(
        settings, home=tmp_path / "second-home", database_url=settings.db_url
    )
    with pytest.raises(IndexMismatchError, match="none of whose files is in .*second-home"):
        Engine(second).index_paths([folder / "demo-01.flac"])
    assert {t.id for t in rows(engine).values() if t.status == "indexed"} == indexed
    assert Path(engine.search(folder / "demo-02.ogg", k=1)[0].path).name == "demo-02.ogg"
    summary = Engine(second).index_paths([folder], rebuild=True)
    assert summary.indexed == len(indexed)  # the bad files, failed, stay unchanged
    hit = Engine(second).search(folder / "demo-02.ogg", k=1)[0]
    assert Path(hit.path).name == "demo-02.ogg"


def test_a_slow_index_write_makes_the_batches_longer(settings, folder, monkeypatch):
    """Each batch writes the whole index again: at 100,000 tracks 2 GB, which every 32 tracks
    had made the writes grow with the square of the catalog. Once a write takes SLOW_SAVE_S, the
    next batch lasts ten times as long."""
    import time

    from mirsearch import commits

    save = VectorIndex.save

    def slow(self, *args, **kwargs):
        time.sleep(0.2)
        return save(self, *args, **kwargs)

    monkeypatch.setattr(VectorIndex, "save", slow)
    monkeypatch.setattr(commits, "SLOW_SAVE_S", 0.1)
    run = Indexer(settings)
    run.batch_tracks = 1  # a generation a track, but for the slow writes
    summary = run.run([folder], workers=1)
    assert summary.indexed + summary.failed == 9
    assert Engine(settings).catalog.index_state().generation <= 3


def test_a_rebuild_keeps_every_track_found_until_it_reaches_it(settings, folder):
    """A rebuild had started from an empty index, every track pending: `match`, `search` and
    `similar` called the catalog empty until it ended, and one killed midway left the tracks
    it had not reached unsearchable. Now each track is analysed again into the index as it is."""
    engine = Engine(settings)
    engine.index_paths([folder])
    before = {name: t for name, t in rows(engine).items() if t.status == "indexed"}
    rebuild = Indexer(settings)
    rebuild.batch_tracks = 2
    seen = []

    def interrupted(n: int) -> None:
        seen.append(n)
        if len(seen) > 3:  # two committed, the third's batch lost
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rebuild.run([folder], workers=1, rebuild=True, progress=interrupted)
    reader = Engine(settings)
    after = rows(reader)
    assert {name for name, t in after.items() if t.status == "indexed"} == set(before)
    again = {name for name in before if after[name].indexed_at != before[name].indexed_at}
    assert len(again) == 2
    assert all(reader.index().contains(t.id) for t in before.values())
    longest = max(before, key=lambda name: before[name].duration_s)
    assert Path(reader.search(folder / longest, k=1)[0].path).name == longest
    summary = Indexer(settings).run([folder], workers=1, rebuild=True)
    assert summary.indexed == len(before) and summary.unchanged == 0


def test_an_index_folder_another_catalog_wrote_is_refused_then_rebuilt(settings, folder, tmp_path):
    """A MIRSEARCH_DATABASE_URL pointed at another database, the home kept: that catalog writes
    its generations into this one's index folder. This catalog's queries are refused (they had
    read the other's vectors under its own track ids), and so is its next run, which had
    embedded every track again: where the home is another catalog's, not this one's, that had
    marked every track of a shared catalog pending and left its real home behind. --rebuild
    embeds again."""
    Engine(settings).index_paths([folder / "demo-01.flac"])
    other = dataclasses.replace(settings, database_url=f"sqlite:///{tmp_path / 'other.db'}")
    Engine(other).index_paths([folder / "demo-02.ogg"])
    refused = "written for another catalog database.*`mirsearch index --rebuild`"
    with pytest.raises(IndexMismatchError, match=refused):  # the command that works, named
        Engine(settings).search(folder / "demo-01.flac", k=1)
    told = "the files of that generation in .* were written for another catalog database"
    with pytest.raises(IndexMismatchError, match=told):
        Engine(settings).index_paths([folder / "demo-01.flac"])
    assert "pending" not in {t.status for t in rows(Engine(settings)).values()}
    assert Engine(settings).index_paths([folder / "demo-01.flac"], rebuild=True).indexed == 1
    hit = Engine(settings).search(folder / "demo-01.flac", k=1)[0]
    assert Path(hit.path).name == "demo-01.flac"
