"""The `mirsearch` command on a demo catalog: every command, JSON lines and plain output, errors per
file, exit codes, and the environment variables it reads."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from conftest import SR, clicks, noise, tone

from mirsearch import containers
from mirsearch.audio import load
from mirsearch.checkpoints import load_checkpoint, save_checkpoint
from mirsearch.cli import _stopped_as_interrupted, main, queries
from mirsearch.cli.common import genre_label
from mirsearch.config import Settings
from mirsearch.demo import write_demo_catalog
from mirsearch.encoding import write
from mirsearch.errors import ModelError
from mirsearch.model_card import read_card

COMMANDS = {
    "index",
    "search",
    "similar",
    "match",
    "dupes",
    "classify",
    "tracks",
    "genres",
    "stats",
    "train",
    "train-default",
    "evaluate",
    "db",
    "demo",
    "serve",
}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A MIRSEARCH_HOME with four demo tracks and one file that is not audio, indexed through the
    CLI; (home, music, summary)."""
    home = tmp_path_factory.mktemp("cli-home")
    music = tmp_path_factory.mktemp("cli-music")
    write_demo_catalog(music, n_tracks=4)
    (music / "liner-notes.mp3").write_text("these are liner notes, not audio\n" * 20)
    result = CliRunner().invoke(
        main, ["index", str(music), "--json"], env={"MIRSEARCH_HOME": str(home)}
    )
    assert result.exit_code == 0, result.output
    return home, music, json.loads(result.output.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def clip(home, tmp_path_factory) -> Path:
    """10 s of demo-02 from 5 s."""
    source = home[1] / "demo-02.ogg"
    folder = tmp_path_factory.mktemp("cli-clip")
    return write(folder / "clip.wav", load(source).samples[5 * 16_000 : 15 * 16_000], 16_000)


MATCH = queries._match  # before a test replaces it


def run(home, *args, **env):
    environment = {"MIRSEARCH_HOME": str(home[0]), "MIRSEARCH_DATABASE_URL": None, **env}
    return CliRunner().invoke(main, list(map(str, args)), env=environment)


def test_index_takes_sigterm_as_ctrl_c_in_its_own_process_only(home):
    """While `index` runs, SIGTERM is Ctrl-C in its process, and the handler before is back
    after (the command run in a longer-lived process, as here, had left its own set). A process
    forked from it and stopped before setting its own handlers ends there: the interrupt raised
    in it had unwound its copy of the parent's stack (a pytest session's teardown, in a worker,
    stopped this suite's PostgreSQL server mid-run)."""
    before = signal.getsignal(signal.SIGTERM)
    assert run(home, "index", home[1]).exit_code == 0
    assert signal.getsignal(signal.SIGTERM) is before
    with _stopped_as_interrupted():
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs before this returns
        child = os.fork()
        if child == 0:  # whatever happens here ends here
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            except BaseException:
                os._exit(1)  # the interrupt reached the copy of this test
            os._exit(0)
        _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before


def lines(result) -> list[dict]:
    return [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]


def listed_commands(help_text: str) -> set[str]:
    """The command names of a group's help: the first word of each line under 'Commands:'."""
    section = help_text.split("\nCommands:\n", 1)[1]
    return {line.split()[0] for line in section.splitlines() if line.startswith("  ")}


def test_help_lists_every_command_and_each_has_its_own_help():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert listed_commands(result.output) == COMMANDS
    assert listed_commands(CliRunner().invoke(main, ["db", "--help"]).output) == {
        "upgrade",
        "downgrade",
    }
    for command in COMMANDS:
        own = CliRunner().invoke(main, [command, "--help"])
        assert own.exit_code == 0 and own.output.startswith(f"Usage: main {command} "), command


def test_index_summary_contract_and_plain_summary(home):
    summary = home[2]
    assert {"indexed", "unchanged", "failed", "seconds", "audio_hours"} <= set(summary)
    assert (summary["indexed"], summary["failed"]) == (4, 1)  # one failed file: still exit 0
    again = run(home, "index", home[1])
    assert again.exit_code == 0
    assert re.fullmatch(
        r"indexed 0, unchanged 5, moved 0, failed 0, changing 0, removed 0, missing 0, "
        r"duplicates 0 in [\d.]+ s "
        r"\(0\.00 h of audio\)\n",
        again.output,
    ), again.output


def test_index_exits_non_zero_when_every_file_failed(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.mp3").write_text("not audio")
    (bad / "b.flac").write_bytes(b"")
    home = (tmp_path / "home", bad, None)
    result = run(home, "index", bad, "--json")
    assert result.exit_code == 1
    assert lines(result)[0]["failed"] == 2 and lines(result)[0]["indexed"] == 0
    plain = run(home, "index", bad)  # the failures are recorded: a re-run finds them unchanged
    assert plain.exit_code == 0 and "indexed 0, unchanged 2, moved 0, failed 0" in plain.output


def test_listings(home):
    tracks = lines(run(home, "tracks", "--json"))
    assert len(tracks) == 4 and {"id", "path", "status", "tempo_bpm", "key"} <= set(tracks[0])
    assert all(t["track_id"] == t["id"] for t in tracks)  # the name results and HTTP use
    genres = lines(run(home, "genres", "--json"))
    assert genres and {"genre", "count"} == set(genres[0])
    stats = lines(run(home, "stats", "--json"))[0]
    assert (stats["indexed"], stats["failed"], stats["tracks"]) == (4, 1, 5)
    assert stats["index_kind"] == "sq8" and stats["index_windows"] > 4


WORD_2 = re.compile(r"(?<![^\W_])2(?![^\W_])")  # "2" with no letter or digit beside it


def test_tracks_filters_by_text_status_and_page(home):
    failed = lines(run(home, "tracks", "--status", "failed", "--json"))
    assert [Path(t["path"]).name for t in failed] == ["liner-notes.mp3"] and failed[0]["error"]
    assert len(lines(run(home, "tracks", "--status", "all", "--json"))) == 5
    found = lines(run(home, "tracks", "--q", "DEMO 2", "--json"))
    every = lines(run(home, "tracks", "--json"))  # "2" whole: in a title, or in pytest-2/
    expected = [t["title"] for t in every if t["title"] == "Demo 2" or WORD_2.search(t["path"])]
    assert [t["title"] for t in found] == expected and len(every) == 4  # not in pytest-182/
    first = lines(run(home, "tracks", "--per-page", "3", "--json"))
    second = lines(run(home, "tracks", "--page", "2", "--per-page", "3", "--json"))
    assert len(first) == 3 and len(second) == 1
    assert {t["id"] for t in first} | {t["id"] for t in second} == {
        t["id"] for t in lines(run(home, "tracks", "--json"))
    }
    past_sql = run(home, "tracks", "--page", str(10**20))  # past SQLite's 64-bit integers
    assert past_sql.exit_code == 2 and "1<=x<=1000000000" in past_sql.output
    plain = run(home, "tracks", "--page", "2", "--per-page", "3").output.splitlines()
    assert len(plain) == 2 and plain[-1] == "1 of 4 tracks"
    assert re.match(rf"\s*{second[0]['id']}\s+indexed\s+[\d.]+s\s+.+\s+Demo 4$", plain[0])
    typo = run(home, "tracks", "--genre", "jaz")  # a listing's filter: no error, but a hint
    assert (
        typo.exit_code == 0
        and "0 of 0 tracks (unknown genre 'jaz'; the catalog has:" in typo.output
    )
    failed_plain = run(home, "tracks", "--status", "failed").output
    assert "liner-notes.mp3  error: " in failed_plain
    assert "error: /" not in failed_plain  # the path is on the line already, not said twice


def test_genres_and_stats_in_plain_text(home):
    counts = {g["genre"]: g["count"] for g in lines(run(home, "genres", "--json"))}
    plain = run(home, "genres").output.splitlines()
    assert {line.split(None, 1)[1]: int(line.split()[0]) for line in plain} == counts
    stats = run(home, "stats").output
    assert "indexed: 4\n" in stats and "failed: 1\n" in stats and "index_generation: " in stats


def test_search_similar_match_classify_and_a_failing_file(home, clip, tmp_path):
    bad = tmp_path / "bad.ogg"
    bad.write_text("nope")
    source = str(home[1] / "demo-02.ogg")
    result = run(home, "search", clip, bad, "--k", "2", "--json")
    assert result.exit_code == 0  # one of two worked
    found = lines(result)
    assert len(found) == 2 and len(found[0]["results"]) == 2 and "error" in found[1]
    assert found[0]["results"][0]["path"] == source and found[1]["query"] == str(bad)
    told = run(home, "search", bad).output
    assert told.startswith(f"{bad}: error: ") and told.count(str(bad)) == 1
    similar = lines(run(home, "similar", found[0]["results"][0]["track_id"], "--k", "2", "--json"))
    assert len(similar[0]["results"]) == 2
    assert similar[0]["track_id"] == found[0]["results"][0]["track_id"]  # a number, as in HTTP
    assert found[0]["results"][0]["track_id"] not in [r["track_id"] for r in similar[0]["results"]]
    match = lines(run(home, "match", clip, "--json"))[0]
    assert match["matches"][0]["path"] == source
    assert match["matches"][0]["track_offset_s"] == pytest.approx(5.0, abs=1.6)
    classified = lines(run(home, "classify", clip, "--json"))[0]
    assert classified["genre"] in classified["probabilities"]
    assert classified["similar"][0]["path"] == source


def test_plain_output_of_search_similar_match_and_classify(home, clip):
    searched = run(home, "search", clip, "--k", "2").output.splitlines()
    assert searched[0] == str(clip) and len(searched) == 3
    assert re.fullmatch(r"\s+1\. [01]\.\d{3}  Demo 2 @ [\d.]+s(  \[\S.*\])?", searched[1])
    track_id = lines(run(home, "search", clip, "--k", "1", "--json"))[0]["results"][0]["track_id"]
    similar = run(home, "similar", track_id, "--k", "3").output.splitlines()
    assert similar[0] == str(track_id) and len(similar) == 4 and "Demo 2" not in similar[1]
    matched = run(home, "match", clip).output
    assert re.search(
        rf"DUPLICATE of Demo 2 \(track {track_id}\): score [01]\.\d\d, upload [\d.]+s = track "
        r"[\d.]+s for [\d.]+s, speed [\d.]+",
        matched,
    ), matched
    classified = run(home, "classify", clip).output.splitlines()
    assert re.fullmatch(rf"{re.escape(str(clip))}: \S.* \(.+ \d\.\d\d.*\)", classified[0])
    tags = lines(run(home, "classify", clip, "--json"))[0]["tags"]
    if tags:  # a student network also names tags, best first
        assert classified[1] == "  tags: " + ", ".join(f"{t['tag']} {t['score']:.2f}" for t in tags)
    similar_lines = [line for line in classified if line.startswith("  similar: ")]
    assert similar_lines[0].endswith("Demo 2") and classified[-1] == similar_lines[-1]


def test_a_hit_kept_by_its_files_genre_tag_says_so_in_plain_text(home, clip):
    """Demo 4 is tagged ballroom, a genre the model never predicts: the filter keeps it by its
    tag alone (Demo 2's rock tag had served while the model heard no rock in it)."""
    hit = lines(run(home, "search", clip, "--genre", "ballroom", "--json"))[0]["results"][0]
    assert (hit["title"], hit["tag_genre"]) == ("Demo 4", "ballroom") and hit["genre"]
    shown = f"{hit['genre']} · tagged ballroom"
    searched = run(home, "search", clip, "--genre", "ballroom").output.splitlines()
    assert " Demo 4 @ " in searched[1] and searched[1].endswith(f"  [{shown}]")
    listed = run(home, "tracks", "--genre", "ballroom").output.splitlines()
    assert re.search(rf"\s{re.escape(shown)}\s+Demo 4$", listed[0]), listed
    assert listed[-1] == "1 of 1 tracks"


def test_genre_label_names_the_tag_only_where_it_files_the_track_elsewhere():
    assert genre_label("electronic", "Jazz ") == "electronic · tagged Jazz"
    assert genre_label("rock", " Rock") == "rock"
    assert genre_label("rock", "Rock;rock") == "rock"
    assert genre_label(None, "jazz") == "tagged jazz"
    assert genre_label("jazz", None) == "jazz" and genre_label(None, "  ") == ""


def test_match_of_music_not_in_the_catalog(home, tmp_path):
    other = write(tmp_path / "tone.wav", tone(523.0, 8.0) + clicks(100.0, 8.0), 16_000)
    assert lines(run(home, "match", other, "--json")) == [{"query": str(other), "matches": []}]
    assert "no catalog track found in it" in run(home, "match", other).output


def test_query_commands_on_two_workers_answer_as_on_one_in_order_folders_expanded(
    home, clip, tmp_path
):
    bad = tmp_path / "bad.ogg"
    bad.write_text("nope")
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    write(uploads / "a.wav", load(clip).samples, 16_000)
    write(uploads / "b.wav", load(home[1] / "demo-03.mp3").samples[: 10 * 16_000], 16_000)
    (uploads / "notes.txt").write_text("not audio, not a clip")
    clips = [str(clip), str(bad), str(uploads / "a.wav"), str(uploads / "b.wav")]
    for command in ("match", "search", "classify"):
        one = lines(run(home, command, clip, bad, uploads, "--json", "--workers", "1"))
        two = lines(run(home, command, clip, bad, uploads, "--json", "--workers", "2"))
        assert one == two, command
        assert [line["query"] for line in one] == clips, command
        assert ["error" in line for line in one] == [False, True, False, False], command
    matched = lines(run(home, "match", uploads, "--json"))
    sources = [Path(line["matches"][0]["path"]).name for line in matched]
    assert sources == ["demo-02.ogg", "demo-03.mp3"]


def test_an_unreadable_file_and_a_folder_without_audio_each_get_a_line_and_the_rest_go_on(
    home, clip, tmp_path, monkeypatch
):
    empty = tmp_path / "empty"
    empty.mkdir()
    locked = tmp_path / "locked.wav"
    locked.write_bytes(clip.read_bytes())
    opened = containers._is_wav  # the first read of a file; root reads past chmod 000

    def refused(path):
        if path == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return opened(path)

    monkeypatch.setattr(containers, "_is_wav", refused)
    for command in ("match", "search", "classify"):
        result = run(home, command, clip, locked, empty, "--json", "--workers", "1")
        answered = lines(result)
        assert result.exit_code == 0 and len(answered) == 3, command
        assert [line["query"] for line in answered] == [str(clip), str(locked), str(empty)]
        assert "error" not in answered[0]
        assert answered[1]["error"] == f"{locked}: the file cannot be read (Permission denied)"
        assert answered[2]["error"] == f"{empty}: no audio files in this folder"
    alone = run(home, "match", empty)
    assert (
        alone.exit_code == 1 and alone.output == f"{empty}: error: no audio files in this folder\n"
    )


def undecodable(path: Path, clip: Path) -> Path:
    """`clip`, a PCM WAV, with its format tag made one FFmpeg has no decoder for (0x9999)."""
    data = bytearray(clip.read_bytes())
    at = data.index(b"fmt ") + 8
    data[at : at + 2] = (0x9999).to_bytes(2, "little")
    path.write_bytes(bytes(data))
    return path


def test_a_folder_s_file_whose_name_is_not_utf_8_gets_its_error_line_too(home, clip, tmp_path):
    """A query over a folder had left such a file out with no line (a warning to rename it "to
    index it"): a script counting one line per file lost it unseen. Named alone it had its line."""
    folder = tmp_path / "uploads"
    folder.mkdir()
    (folder / "a.wav").write_bytes(clip.read_bytes())
    (folder / os.fsdecode(b"bad\xff.wav")).write_bytes(clip.read_bytes())
    result = run(home, "match", str(folder), "--json", "--workers", "1")
    answered = [json.loads(line) for line in result.stdout_bytes.decode("utf-8").splitlines()]
    names = [Path(line["query"]).name for line in answered]
    assert names == ["a.wav", os.fsdecode(b"bad\xff.wav")], answered
    assert answered[0]["matches"]
    assert answered[1]["error"].endswith(
        "the file's name is not UTF-8, which FFmpeg needs: rename it"
    )


def test_each_clip_s_line_names_it_as_given_in_utf_8_and_a_codec_without_decoder_is_its_error(
    home, clip, tmp_path, monkeypatch
):
    """`./clip.wav` is named so on its line (a Path had made it `clip.wav`: a script that looks
    its lines up by what it passed found none); a name that is not UTF-8 is written as JSON's
    escapes (its raw byte had made the line, and a client's whole decoded output, invalid); an
    audio codec FFmpeg cannot decode is that file's error line (an AttributeError had ended the
    batch); and a catalog that cannot be used is each clip's line with a pool of workers too
    (they had printed nothing)."""
    monkeypatch.chdir(clip.parent)
    odd = os.fsdecode(b"bad\xff.wav")
    Path(odd).write_bytes(clip.read_bytes())
    strange = undecodable(tmp_path / "tag-9999.wav", clip)
    given = ["./clip.wav", odd, str(strange), f"{clip.parent}//clip.wav"]
    for workers in ("1", "2"):
        result = run(home, "match", *given, "--json", "--workers", workers)
        assert result.exit_code == 0, result.output
        answered = [json.loads(line) for line in result.stdout_bytes.decode("utf-8").splitlines()]
        assert [line["query"] for line in answered] == given
        assert answered[0]["matches"] and answered[3]["matches"] == answered[0]["matches"]
        assert answered[1]["error"] == (
            "bad\\xff.wav: the file's name is not UTF-8, which FFmpeg needs: rename it"
        )
        assert (
            answered[2]["error"] == f"{strange}: FFmpeg has no decoder for the audio in this file"
        )
    plain = run(home, "match", "./clip.wav", odd, "--workers", "1")
    assert "./clip.wav\n  DUPLICATE of" in plain.output
    Path("bad.ogg").write_text("nope")  # its error names it `bad.ogg`, as a Path makes it
    told = run(home, "match", "./bad.ogg", "--workers", "1").output
    assert told.startswith("./bad.ogg: error: ") and told.count("bad.ogg") == 1, told
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "catalog.db").write_text("garbage")
    result = run((damaged,), "match", "./clip.wav", str(clip), "--json", "--workers", "2")
    answered = lines(result)
    assert result.exit_code == 1 and [line["query"] for line in answered] == [
        "./clip.wav",
        str(clip),
    ]
    assert all("cannot be used" in line["error"] for line in answered)
    music = tmp_path / "music"
    music.mkdir()
    shutil.copy(strange, music)
    shutil.copy(clip, music)
    summary = lines(run((tmp_path / "own",), "index", music, "--json"))[-1]
    assert (summary["indexed"], summary["failed"]) == (1, 1)


def test_a_catalog_opened_read_only_through_a_sqlite_uri_answers(home):
    read_only = f"sqlite:///file:{home[0] / 'catalog.db'}?mode=ro&uri=true"
    stats = lines(run(home, "stats", "--json", MIRSEARCH_DATABASE_URL=read_only))[0]
    assert stats["indexed"] == 4


def test_a_home_that_is_a_file_is_told_as_such(clip, tmp_path):
    (tmp_path / "home").write_text("a file where the catalog's folder should be")
    result = run((tmp_path / "home",), "index", clip)
    assert result.exit_code == 1
    assert f"cannot make the folder {tmp_path / 'home'}: a file is in its way" in result.output
    stats = run((tmp_path / "home",), "stats")  # it had said to run `mirsearch index` first
    assert stats.exit_code == 1
    assert f"{tmp_path / 'home'} is a file, not the catalog's folder" in stats.output


def test_an_index_folder_that_is_a_file_is_told_as_such(home, tmp_path):
    """It had been 'File exists'."""
    copied = tmp_path / "copied"
    copied.mkdir()
    shutil.copy(home[0] / "catalog.db", copied / "catalog.db")
    (copied / "index").write_text("a file where the vector index's folder should be")
    result = run((copied,), "stats")
    assert result.exit_code == 1
    assert f"{copied / 'index'}: a file is in the way of this folder" in result.output


def test_a_command_that_only_reads_makes_no_catalog_where_there_is_none(clip, tmp_path):
    """A mistyped MIRSEARCH_HOME is told as such, not answered from a new empty catalog."""
    typo = tmp_path / "typo"
    missing = f"no catalog at {typo / 'catalog.db'}: run `mirsearch index PATH` first"
    for args in (["stats"], ["tracks"], ["genres"], ["dupes"], ["similar", "1"]):
        result = run((typo,), *args)
        assert result.exit_code == 1 and missing in result.output, args
    for command in ("search", "match"):
        result = run((typo,), command, clip, clip, "--json")
        assert (
            result.exit_code == 1
            and [line["error"][: len(missing)] for line in lines(result)] == [missing] * 2
        )
    read_only = f"sqlite:///file:{typo / 'catalog.db'}?mode=ro&uri=true"  # SQLite's URI form
    result = run((typo,), "stats", MIRSEARCH_DATABASE_URL=read_only)
    assert result.exit_code == 1 and missing in result.output
    classified = run((typo,), "classify", clip, "--json")  # genres and tags need no catalog
    assert classified.exit_code == 0 and lines(classified)[0]["similar"] == []
    assert not typo.exists()


def test_a_command_that_only_reads_leaves_an_empty_file_and_a_home_without_index_as_they_are(
    home, clip, tmp_path
):
    """A catalog.db of 0 bytes had been made an empty SQLite database by `stats` or `search`,
    and a home whose index folder was gone got one back, made for its lock file."""
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "catalog.db").touch()
    told = f"no catalog at {empty / 'catalog.db'}: the file is empty (0 bytes)"
    for args in (["stats"], ["similar", "1"], ["search", clip], ["match", clip, "--workers", "1"]):
        result = run((empty,), *args)
        assert result.exit_code == 1 and told in result.output, args
    classified = run((empty,), "classify", clip, "--json")  # as with no file: no similar tracks
    assert classified.exit_code == 0 and lines(classified)[0]["similar"] == []
    assert [p.name for p in empty.iterdir()] == ["catalog.db"]
    assert (empty / "catalog.db").stat().st_size == 0
    unindexed = tmp_path / "unindexed"
    unindexed.mkdir()
    shutil.copy(home[0] / "catalog.db", unindexed / "catalog.db")
    stats = lines(run((unindexed,), "stats", "--json"))[0]
    assert stats["indexed"] == 4 and "cannot be read" in stats["index_problem"]
    searched = lines(run((unindexed,), "search", clip, "--json"))[0]
    assert "missing windows-" in searched["error"]
    assert not (unindexed / "index").exists()


def test_classify_timeline_gives_every_window_a_genre_of_the_model(home, clip):
    result = lines(run(home, "classify", clip, "--timeline", "--similar", "0", "--json"))[0]
    labels = set(result["probabilities"])
    timeline = result["timeline"]
    hop_s = Settings().embedding.query_hop_s
    assert len(timeline) >= (10 - 3) / hop_s  # a 10 s clip: a window every hop_s
    offsets = [w["offset_s"] for w in timeline]
    assert offsets[0] == 0.0 and all(
        b - a == pytest.approx(hop_s) for a, b in zip(offsets, offsets[1:], strict=False)
    )
    assert all(w["genre"] in labels and 0 < w["probability"] <= 1 for w in timeline)
    assert result["similar"] == []
    plain = run(home, "classify", clip, "--timeline", "--similar", "0").output.splitlines()
    windows = [line for line in plain if re.fullmatch(r"\s+\d+\.\ds \S.* \d\.\d\d", line)]
    assert len(windows) == len(timeline) and windows[0].split()[0] == "0.0s"
    assert len(plain) == 1 + bool(result["tags"]) + len(timeline)


def test_search_and_similar_keep_to_the_genres_asked_for(home, clip):
    genres = lines(run(home, "genres", "--json"))
    genre = min(genres, key=lambda g: (g["count"], g["genre"]))["genre"]
    allowed = {t["id"] for t in lines(run(home, "tracks", "--genre", genre, "--json"))}
    assert 0 < len(allowed) < 4
    found = lines(run(home, "search", clip, "--k", "4", "--genre", genre, "--json"))[0]
    assert {r["track_id"] for r in found["results"]} == allowed
    track_id = next(t["id"] for t in lines(run(home, "tracks", "--json")) if t["id"] not in allowed)
    similar = lines(run(home, "similar", track_id, "--k", "4", "--genre", genre, "--json"))[0]
    assert {r["track_id"] for r in similar["results"]} == allowed
    unknown = run(home, "search", clip, "--genre", "no-such-genre", "--json")
    assert unknown.exit_code == 1 and "unknown genre 'no-such-genre'" in lines(unknown)[0]["error"]
    assert run(home, "similar", track_id, "--genre", "no-such-genre").exit_code == 1


def test_nothing_worked_or_bad_arguments_exit_non_zero(home, clip, tmp_path):
    bad = tmp_path / "bad.ogg"
    bad.write_text("nope")
    assert run(home, "search", bad, "--json").exit_code == 1
    assert run(home, "search", clip, "--k", "zero").exit_code == 2
    fraction = run(home, "search", clip, "--k", "1.5")  # click had said "integer range"
    assert fraction.exit_code == 2 and "'1.5' is not a valid integer." in fraction.output
    word = run(home, "train", tmp_path, "--lr", "abc")
    assert word.exit_code == 2 and "'abc' is not a valid number." in word.output
    zero = run(home, "search", clip, "--k", "0", "--json")
    assert zero.exit_code == 2 and "0 is not in the range 1<=x<=1000" in zero.output
    assert run(home, "similar", 999, "--json").exit_code == 1
    assert "error: no track with id 999" in run(home, "similar", 999).output


def test_an_empty_path_is_refused_not_read_as_the_current_folder(home, tmp_path, monkeypatch):
    """`index "$MUSIC"` with the variable unset had indexed the folder it ran in (with --prune,
    pruned under it), and `match ""` read every file there."""
    here = tmp_path / "here"
    here.mkdir()
    write(here / "a.wav", tone(440.0, 5.0), SR)
    monkeypatch.chdir(here)
    for args in (("index", ""), ("index", "--prune", ""), ("match", ""), ("classify", "")):
        refused = run(home, *args)
        assert refused.exit_code == 2, args
        assert "an empty path names no file or folder" in refused.output, args
    listed = run(home, "tracks", "--status", "all", "--json")
    assert str(here) not in listed.output


def test_bad_engine_options_and_settings_are_usage_errors(home, tmp_path):
    result = run(home, "index", tmp_path, "--address", "auto")
    assert result.exit_code == 2 and "--address goes with --engine ray" in result.output
    assert run(home, "index", tmp_path, "--engine", "spark").exit_code == 2
    result = run(home, "stats", MIRSEARCH_INDEX_KIND="lsh")
    assert result.exit_code == 2 and "MIRSEARCH_INDEX_KIND is 'lsh'" in result.output
    result = run(home, "stats", MIRSEARCH_INDEX_MAPPED="yes")
    assert result.exit_code == 2 and "MIRSEARCH_INDEX_MAPPED is 'yes'" in result.output
    for megabytes in ("1e3", "0", "100001"):  # 0 would refuse every upload as too large
        result = run(home, "stats", MIRSEARCH_MAX_UPLOAD_MB=megabytes)
        assert (
            result.exit_code == 2 and f"MIRSEARCH_MAX_UPLOAD_MB is '{megabytes}'" in result.output
        )
    assert run(home, "stats", MIRSEARCH_MAX_UPLOAD_MB="100000").exit_code == 0
    result = run(home, "stats", MIRSEARCH_SPEED_READINGS="off")
    assert result.exit_code == 2 and "MIRSEARCH_SPEED_READINGS is 'off'" in result.output


def test_dupes_reports_a_planted_copy(tmp_path):
    music = tmp_path / "music"
    original = write_demo_catalog(music, n_tracks=2)[0]
    excerpt = load(original).samples[8 * 16_000 : 28 * 16_000]
    write(music / "excerpt.mp3", excerpt, 16_000, bit_rate=96_000)
    home = (tmp_path / "home", music, None)
    assert run(home, "index", music).exit_code == 0
    groups = lines(run(home, "dupes", "--json"))[0]["groups"]
    assert len(groups) == 1
    names = {Path(t["path"]).name for t in groups[0]["tracks"]}
    assert names == {"demo-01.flac", "excerpt.mp3"}
    assert groups[0]["evidence"][0]["duration_s"] >= 15
    plain = run(home, "dupes").output.splitlines()
    assert plain[-1] == "1 near-duplicate groups" and len(plain) == 2
    version = r"\d+:(Demo 1|excerpt\.mp3) \(speed [\d.]+\)"
    assert re.fullmatch(rf"group 1: {version}, {version}", plain[0]), plain[0]


def test_dupes_on_a_catalog_without_copies(home):
    assert lines(run(home, "dupes", "--json")) == [{"groups": []}]
    assert run(home, "dupes").output == "0 near-duplicate groups\n"


def test_db_downgrade_and_upgrade(tmp_path):
    home = (tmp_path / "home", None, None)

    def tables() -> set[str]:
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'home' / 'catalog.db'}")
        try:
            return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
        finally:
            engine.dispose()

    up = run(home, "db", "upgrade")
    assert up.exit_code == 0 and up.output == "database is at the newest schema\n"
    assert {"tracks", "track_prints", "index_state"} <= tables()
    assert run(home, "db", "downgrade").exit_code == 2  # which revision: no default to empty it
    kept = CliRunner().invoke(
        main, ["db", "downgrade", "base"], input="n\n", env={"MIRSEARCH_HOME": str(home[0])}
    )
    assert kept.exit_code == 1 and "Aborted" in kept.output and "tracks" in tables()
    bad = CliRunner().invoke(  # refused before it asks: a typo had been asked about first
        main, ["db", "downgrade", "nonsense"], input="y\n", env={"MIRSEARCH_HOME": str(home[0])}
    )
    assert bad.exit_code == 1 and "no revision 'nonsense'" in bad.output
    assert "Downgrade the catalog" not in bad.output and "Traceback" not in bad.output
    same = run(home, "db", "downgrade", "head", "--yes")
    assert same.exit_code == 0 and "nothing downgraded" in same.output
    step = run(home, "db", "downgrade", "--yes", "--", "-1")  # one migration back
    assert step.exit_code == 0 and step.output == "database downgraded to 0012\n"
    down = run(home, "db", "downgrade", "base", "--yes")
    assert down.exit_code == 0 and down.output == "database downgraded to base\n"
    assert tables() == set()
    assert run(home, "db", "upgrade").exit_code == 0
    assert {"tracks", "track_prints", "index_state"} <= tables()
    empty = run(home, "db", "downgrade", "", "--yes")  # alembic's AssertionError had come out
    assert empty.exit_code == 2 and "name a revision" in empty.output


def test_db_commands_on_a_database_that_cannot_be_used_say_so_in_one_line(tmp_path):
    """As every other command does; upgrade and downgrade had shown SQLAlchemy's traceback."""
    home = (tmp_path / "home", None, None)
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "catalog.db").write_text("liner notes, not a database\n" * 10)
    for args in (["upgrade"], ["downgrade", "base", "--yes"]):
        result = run(home, "db", *args)
        assert result.exit_code == 1, result.output
        assert result.output == (
            f"Error: the catalog database sqlite:///{tmp_path / 'home' / 'catalog.db'} cannot be "
            "used: file is not a database\n"
        )


def test_demo_writes_tagged_tracks(tmp_path):
    result = CliRunner().invoke(main, ["demo", str(tmp_path / "demo"), "--tracks", "2"])
    assert result.exit_code == 0
    paths = [Path(line) for line in result.output.splitlines()]
    assert [p.name for p in paths] == ["demo-01.flac", "demo-02.ogg"]
    decoded = load(paths[1])
    assert decoded.info.tags["title"] == "Demo 2" and decoded.info.duration_s >= 30


def test_the_database_url_variable_moves_the_catalog(home, tmp_path):
    url = f"sqlite:///{tmp_path / 'elsewhere' / 'catalog.db'}"
    own = (tmp_path / "home", None, None)
    indexed = run(own, "index", home[1] / "demo-01.flac", "--json", MIRSEARCH_DATABASE_URL=url)
    assert indexed.exit_code == 0 and lines(indexed)[0]["indexed"] == 1
    assert (tmp_path / "elsewhere" / "catalog.db").is_file()
    assert not (tmp_path / "home" / "catalog.db").exists()
    assert (tmp_path / "home" / "index").is_dir()  # the vectors stay in the home
    assert lines(run(own, "stats", "--json", MIRSEARCH_DATABASE_URL=url))[0]["indexed"] == 1
    without = run(own, "stats", "--json")  # the home's own catalog.db was never made
    assert without.exit_code == 1 and f"no catalog at {tmp_path / 'home'}" in without.output


def saved_as(path: Path, checkpoint, *, metadata: dict | None = None) -> Path:
    """`checkpoint`'s network written to `path` by save_checkpoint."""
    card = checkpoint.card
    return save_checkpoint(
        path,
        model=checkpoint.model,
        arch=card.arch,
        arch_args=card.arch_args,
        labels=card.labels,
        window_s=card.window_s,
        metadata=metadata,
    )


def put(path: Path, samples) -> Path:
    """`samples` written to `path` at 16 kHz, its folder created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write(path, samples, 16_000)


def labelled_folder(root: Path) -> Path:
    """Two genres of synthetic clips in genre folders: tones and noise, four of each."""
    for i in range(4):
        put(root / "tones" / f"t{i}.wav", tone(300.0 * 1.3**i, 4.0))
        put(root / "noise" / f"n{i}.wav", noise(4.0, seed=i))
    return root


def test_train_writes_a_checkpoint_that_the_model_variable_selects(home, clip, tmp_path):
    data = labelled_folder(tmp_path / "data")
    out = tmp_path / "model.pt"
    trained = run(
        home,
        "train",
        data,
        "--epochs",
        "1",
        "--steps-per-epoch",
        "2",
        "--batch-size",
        "4",
        "--out",
        out,
        "--log-dir",
        tmp_path / "runs",
    )
    assert trained.exit_code == 0, trained.output
    assert re.fullmatch(
        rf"validation accuracy [\d.]+ \(loss [\d.]+\); checkpoint: {out}\n", trained.output
    )
    assert read_card(out).labels == ["noise", "tones"]
    assert any((tmp_path / "runs").iterdir())  # TensorBoard logs
    fresh = (tmp_path / "fresh-home", None, None)
    classified = lines(run(fresh, "classify", clip, "--json", MIRSEARCH_MODEL=str(out)))
    assert set(classified[0]["probabilities"]) == {"noise", "tones"}
    # the catalog was indexed with the shipped model: its index is refused, with a clear message
    refused = lines(run(home, "search", clip, "--json", MIRSEARCH_MODEL=str(out)))[0]
    assert "does not match" in refused["error"] and "mirsearch index" in refused["error"]
    refused = lines(run(home, "classify", clip, "--json", MIRSEARCH_MODEL=str(out)))[0]
    assert "need no index: ask for 0 similar tracks" in refused["error"]
    genres = lines(
        run(home, "classify", clip, "--similar", "0", "--json", MIRSEARCH_MODEL=str(out))
    )
    assert set(genres[0]["probabilities"]) == {"noise", "tones"}


def test_train_default_trains_the_matcher_then_distils_on_the_chosen_music(tmp_path, monkeypatch):
    """The recipe on a stand-in ../shared, in a tiny configuration: stage 1 trains the matching
    branch on genres/manifest.tsv (labelled) and the packages of audio/manifest.tsv the recipe
    names (unlabelled); stage 2 (the teachers' distillation, tested in its own module) gets that
    checkpoint and the same packages' files plus the fetched music."""
    from mirsearch import distillation, training
    from mirsearch.datasets import CONTRASTIVE_PACKAGES

    shared = tmp_path / "shared"
    rows = ["path\tclass\tgroove"]
    for i in range(4):
        put(shared / "genres" / f"t{i}.wav", tone(250.0 * 1.3**i, 4.0))
        put(shared / "genres" / f"c{i}.wav", clicks(90.0 + 10 * i, 4.0, seed=i))
        rows += [f"t{i}.wav\ttones\tlib{i}:a", f"c{i}.wav\tclicks\tlib{i}:b"]
    (shared / "genres" / "manifest.tsv").write_text("\n".join(rows) + "\n")
    put(shared / "audio" / "heard.ogg", noise(6.0, seed=5))
    put(shared / "audio" / "unheard.ogg", noise(6.0, seed=6))
    (shared / "audio" / "manifest.tsv").write_text(
        f"path\tpackage\nheard.ogg\t{CONTRASTIVE_PACKAGES[0]}\nunheard.ogg\tkept-out-data\n"
    )
    tiny = training.TrainConfig(epochs=1, steps_per_epoch=2, batch_size=4)
    monkeypatch.setitem(training.train_default_model.__kwdefaults__, "config", tiny)
    monkeypatch.setitem(training.train_default_model.__kwdefaults__, "log_dir", None)
    distilled = {}

    def distill(files, matcher, *, out, cache_dir, **options):
        distilled.update(files=[Path(f[0]).name for f in files], matcher=matcher, out=out)
        return [{"epoch": 1, "val_loss": 0.5}, {"epoch": 2, "val_loss": 0.25}]

    monkeypatch.setattr(distillation, "distill", distill)
    out = tmp_path / "models" / "default.pt"
    result = CliRunner().invoke(
        main,
        ["train-default", str(shared), "--out", str(out), "--music", str(tmp_path / "none")],
    )
    assert result.exit_code == 0, result.output
    assert re.match(r"matching branch: validation accuracy [\d.]+\n", result.output)
    assert "tagging branch: best epoch 2 (val loss 0.2500)" in result.output
    matcher = read_card(out.with_name("matcher.pt"))
    assert matcher.labels == ["clicks", "tones"]
    assert matcher.metadata["contrastive_files"] == ["heard.ogg"]
    assert matcher.metadata["recipe"] == "mirsearch train-default"
    assert distilled["files"] == ["heard.ogg"] and distilled["out"] == out
    assert distilled["matcher"].card.sha256 == matcher.sha256


def test_evaluate_cross_validates_on_two_folds(tmp_path, monkeypatch):
    rows = ["path\tclass\tgroup"]
    kinds = {
        "tones": lambda i: tone(220.0 * 1.25**i, 4.0),
        "clicks": lambda i: clicks(80 + 9 * i, 4.0),
    }
    for name, make in kinds.items():
        for i in range(6):
            put(tmp_path / "clips" / f"{name}{i}.wav", make(i))
            rows.append(f"{name}{i}.wav\t{name}\t{name}{i % 3}")  # 3 groups of 2 per class
    manifest = tmp_path / "clips" / "manifest.tsv"
    manifest.write_text("\n".join(rows) + "\n")
    options = ["--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "4"]
    options += ["--methods", "cnn,baseline"]  # 'head' needs the shipped student network
    args = ["evaluate", str(manifest), "--folds", "2", *options, "--out-dir", str(tmp_path / "out")]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert [f["fold"] for f in report["folds"]] == [1, 2]
    assert set(report["cv"]) == {"cnn", "baseline"}
    assert report["cv"]["baseline"]["accuracy"]["mean"] > 0.8  # tones and noise: easy for MFCCs
    assert sum(c["support"] for c in report["per_class"].values()) == 12  # each clip tested once
    assert (tmp_path / "out" / "genre_confusion.png").stat().st_size > 0
    # the plain output of the same report (printed from it, not trained again)
    monkeypatch.setattr("mirsearch.evaluation.evaluate", lambda *a, **k: report)
    plain = CliRunner().invoke(main, args).output.splitlines()
    assert [line.split()[0] for line in plain] == ["cnn", "baseline"]
    mean, std = (report["cv"]["baseline"]["accuracy"][m] for m in ("mean", "std"))
    assert plain[1].startswith(f"baseline  accuracy {mean:.3f} ± {std:.3f}  ")


def test_evaluate_hands_the_options_given_to_the_run(tmp_path, monkeypatch):
    """What the command line says reaches the evaluation: --weight-decay (read, and once
    dropped on the way, nothing would tell), methods with a stray comma, and of a folder like
    ../shared/audio given as --unlabelled only the packages the shipped recipe uses (the others
    stay music the model never heard, for the evaluations)."""
    seen = {}

    def evaluation(clips, **options):
        seen.update(options)
        return {"folds": []}

    monkeypatch.setattr("mirsearch.evaluation.evaluate", evaluation)
    data = labelled_folder(tmp_path / "data")
    music = tmp_path / "audio"
    music.mkdir()
    (music / "manifest.tsv").write_text(
        "path\tpackage\nheard.ogg\twesnoth-1.16-music\nunseen.ogg\tother-game-music\n"
    )
    args = ["evaluate", str(data), "--weight-decay", "0.05", "--methods", "baseline,"]
    args += ["--unlabelled", str(music), "--out-dir", str(tmp_path / "out")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert seen["config"].weight_decay == 0.05 and seen["methods"] == ("baseline",)
    assert [path.name for path in seen["unlabelled_paths"]] == ["heard.ogg"]


@pytest.mark.parametrize(
    ("group", "extra", "expect", "others"),
    [
        ("{name}", [], "a fold trains on clips of one class", ()),
        ("g{i3}", ["--methods", "cnn"], "a fold's network has clips of 1 group", ("baseline",)),
        (
            "g{i2}",
            ["--methods", "cnn", "--folds", "0", "--heldout", "group=g0"],
            "the clips without group = 'g0' are of 1 group",
            ("baseline",),
        ),
    ],
)
def test_evaluate_says_a_fold_cannot_train_before_decoding(
    tmp_path, monkeypatch, group, extra, expect, others
):
    """A fold of one class had stopped scikit-learn's solver with a traceback, and a `cnn` fold
    of one group (its network holds one out to stop early) the first network: both after every
    clip was decoded. `group`: each clip's group, made of its class and number."""
    rows = ["path\tclass\tgroup"]
    for name in ("tones", "clicks"):
        for i in range(4):
            put(tmp_path / f"{name}{i}.wav", tone(220.0 * 1.25**i, 4.0))
            named = group.format(name=name, i3=i % 3, i2=i % 2)
            rows.append(f"{name}{i}.wav\t{name}\t{named}")
    manifest = tmp_path / "manifest.tsv"
    manifest.write_text("\n".join(rows) + "\n")

    def decode_clips(*args, **kwargs):
        raise AssertionError("decoded before the parameters were checked")

    monkeypatch.setattr("mirsearch.evaluation.decode_clips", decode_clips)
    args = ["evaluate", str(manifest), "--folds", "2", "--methods", "baseline", *extra]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert result.output.startswith("Error: ") and expect in result.output, result.output
    monkeypatch.undo()
    named = max(i for i, arg in enumerate(args) if arg == "--methods") + 1  # the last one counts
    for method in others:  # the same folds are fine for a method that trains no network
        args[named] = method
        done = CliRunner().invoke(main, [*args, "--out-dir", str(tmp_path / "out")])
        assert done.exit_code == 0, done.output


def python(script: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`script` run by this interpreter in a process of its own, its output captured."""
    return subprocess.run(
        [sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, timeout=120
    )


CONSOLE_SCRIPT = "import sys; from mirsearch.cli import run; sys.argv[0] = 'mirsearch'; run()"
SERVE_DRIVER = Path(__file__).resolve().parents[1] / "bench" / "serve.py"  # starts `serve`


@pytest.mark.parametrize(
    ("args", "status", "expect"),
    [
        (["index", "--json", "EMPTY"], 0, '"indexed": 0'),
        (["index", "NOWHERE"], 1, "no such file or folder"),
        (["no-such-command"], 2, "No such command"),
    ],
)
def test_the_console_script_flushes_its_output_and_keeps_the_exit_status(
    tmp_path, args, status, expect
):
    (tmp_path / "empty").mkdir()
    places = {"EMPTY": str(tmp_path / "empty"), "NOWHERE": str(tmp_path / "nowhere")}
    done = python(
        CONSOLE_SCRIPT,
        *(places.get(a, a) for a in args),
        env=os.environ | {"MIRSEARCH_HOME": str(tmp_path / "home")},
    )
    assert done.returncode == status, done.stderr
    assert expect in done.stdout + done.stderr


def test_serve_with_a_model_it_cannot_read_stops_with_the_reason_not_a_traceback(tmp_path):
    home, model = str(tmp_path / "home"), str(tmp_path / "no.pt")
    done = python(
        CONSOLE_SCRIPT, "serve", env=os.environ | {"MIRSEARCH_HOME": home, "MIRSEARCH_MODEL": model}
    )
    assert done.returncode == 1, done.stderr  # gunicorn's 3 when its workers said it
    assert done.stderr == (  # once, before any worker starts, not among gunicorn's lines
        f"Error: {tmp_path / 'no.pt'}: no model checkpoint there (train one with `mirsearch "
        "train`)\n"
    )


def test_serve_on_a_port_taken_says_so_last_and_never_that_it_serves(tmp_path):
    """gunicorn tells each try to bind; `serve` had said "serving on" before them all and ended
    without a line of its own."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = python(
            CONSOLE_SCRIPT,
            "serve",
            "--port",
            str(port),
            env=os.environ | {"MIRSEARCH_HOME": str(tmp_path / "home")},
        )
    assert done.returncode == 1, done.stderr
    assert "serving on" not in done.stderr, done.stderr
    assert done.stderr.splitlines()[-1] == (
        f"Error: cannot serve on 127.0.0.1:{port}: see the reason above"
    ), done.stderr


def test_serve_with_a_catalog_it_cannot_use_says_so_once_before_it_starts(tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "catalog.db").write_bytes(b"not a database" * 600)
    done = python(
        CONSOLE_SCRIPT, "serve", env=os.environ | {"MIRSEARCH_HOME": str(tmp_path / "home")}
    )
    assert done.returncode == 1 and done.stdout == "", done.stderr
    assert done.stderr == (
        f"Error: the catalog database sqlite:///{tmp_path / 'home' / 'catalog.db'} cannot be "
        "used: file is not a database\n"
    )


def test_serve_with_an_index_of_another_model_serves_the_catalog_and_says_why_not_searches(
    home, clip, tmp_path, monkeypatch
):
    shipped = load_checkpoint()
    other = saved_as(
        tmp_path / "other.pt",
        shipped,
        metadata={**shipped.card.metadata, "note": "the same weights in another file"},
    )
    monkeypatch.setenv("MIRSEARCH_MODEL", str(other))
    spec = importlib.util.spec_from_file_location("bench_serve", SERVE_DRIVER)
    driver = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(driver)
    port = driver.free_port()
    server = driver.start_server(home[0], port)
    try:
        status, listing = driver.request(port, "GET", "/api/tracks")
        searched = driver.request(port, "POST", "/api/search", ("clip.wav", clip.read_bytes()))
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert status == 200 and listing["tracks"], listing
    assert searched[0] == 503 and searched[1]["error"]["code"] == "index_mismatch", searched
    assert "built by another model" in searched[1]["error"]["message"], searched
    assert "built by another model" in server.stderr.read()  # said when the workers started


CATALOG_COMMAND = """import json, os, sys
from mirsearch.cli import main
try:
    main(["tracks", "--json"])
except SystemExit as exit:
    status = exit.code
print(json.dumps({"status": status, "torch": "torch" in sys.modules,
                  "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}))
"""


QUERY_COMMAND = """import json, sys
from mirsearch.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exit:
    status = exit.code
print(json.dumps({"status": status, "torch": "torch" in sys.modules}))
"""


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["match", "--json", "NOWHERE"], ["no such file"]),
        (["match", "--json", "NOT_AUDIO"], ["not an audio file"]),
        (["search", "--json", "--genre", "polka", "CLIP"], ["unknown genre 'polka'"]),
        (["classify", "--json", "NOT_AUDIO"], ["not an audio file"]),
    ],
)
def test_a_query_that_cannot_be_answered_is_refused_before_the_network_loads(
    home, clip, tmp_path, args, expect
):
    """A bad file or parameter is told in a second, not after importing torch (~3 s). (A batch
    imports torch before forking its workers, once for all of them: see cli/queries.py.)"""
    places = {"NOWHERE": str(tmp_path / "nowhere.mp3"), "CLIP": str(clip)}
    places["NOT_AUDIO"] = str(home[1] / "liner-notes.mp3")
    done = python(
        QUERY_COMMAND,
        *(places.get(a, a) for a in args),
        env=os.environ | {"MIRSEARCH_HOME": str(home[0])},
    )
    *lines, report = done.stdout.splitlines()
    assert json.loads(report) == {"status": 1, "torch": False}, done.stderr
    errors = [json.loads(line)["error"] for line in lines]
    assert len(errors) == len(expect)
    assert all(e in error for e, error in zip(expect, errors, strict=True))


@pytest.mark.parametrize("workers", ["1", "2"])
def test_match_answers_without_importing_torch(home, clip, workers):
    """`match` reads uploads with the numpy matcher (matcher.py), so it answers in about a
    second rather than after importing torch (~2 s); on two workers, they fork without it."""
    done = python(
        QUERY_COMMAND,
        *["match", "--json", "--workers", workers, str(clip), str(clip)],
        env=os.environ | {"MIRSEARCH_HOME": str(home[0])},
    )
    *answers, report = done.stdout.splitlines()
    assert json.loads(report) == {"status": 0, "torch": False}, done.stderr
    assert len(answers) == 2
    for answer in map(json.loads, answers):
        assert Path(answer["matches"][0]["path"]).name == "demo-02.ogg", answer


BLAS_COMMAND = """import json, sys
import numpy
from threadpoolctl import threadpool_info
from mirsearch.cli import main
def blas():
    return max(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")
before = blas()
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps({"before": before, "after": blas()}))
"""


def test_match_on_one_worker_multiplies_on_one_blas_thread(home, clip):
    """The numpy matcher's matrices are small: NumPy's BLAS on a thread a core had taken 1.8x
    the CPU of one thread for no speed (`match --workers 1`, 60 clips and a 3 min upload)."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    done = python(
        BLAS_COMMAND,
        *["match", "--json", "--workers", "1", str(clip)],
        env=env | {"MIRSEARCH_HOME": str(home[0]), "OPENBLAS_NUM_THREADS": "2"},
    )
    *answers, report = done.stdout.splitlines()
    assert json.loads(report) == {"before": 2, "after": 1}, done.stderr
    assert Path(json.loads(answers[0])["matches"][0]["path"]).name == "demo-02.ogg"


@pytest.mark.parametrize(("policy", "expect"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_catalog_commands_load_no_network_and_openmp_threads_sleep_unless_told(
    home, policy, expect
):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    done = python(CATALOG_COMMAND, env=env | {"MIRSEARCH_HOME": str(home[0])})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report == {"status": 0, "torch": False, "omp_wait_policy": expect}
    assert '"path"' in done.stdout  # it did list the catalog


def test_a_damaged_catalog_or_index_is_told_in_a_line(home, clip, tmp_path):
    """A catalog database that is not one fails each command in one line (exit 1), not a
    traceback; `stats` of a catalog whose index generation lost its meta file (or its windows
    file: that had gone unsaid) still summarises the catalog and names the problem."""
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "catalog.db").write_text("garbage")
    for args in (["stats"], ["tracks"], ["dupes"], ["search", clip, "--json"]):
        result = run((damaged,), *args)
        assert result.exit_code == 1, args
        assert "catalog database" in result.output and "cannot be used" in result.output
        assert "Traceback" not in result.output
    copied = tmp_path / "copied"
    shutil.copytree(home[0], copied)
    stats = lines(run((copied,), "stats", "--json"))[0]
    (copied / "index" / f"meta-{stats['index_generation']}.json").unlink()
    told = lines(run((copied,), "stats", "--json"))[0]
    assert told["indexed"] == stats["indexed"] and "index_kind" not in told
    assert "meta file" in told["index_problem"] and "mirsearch index" in told["index_problem"]
    (copied / "index" / f"meta-{stats['index_generation']}.json").write_text("[]")
    told = lines(run((copied,), "stats", "--json"))[0]  # valid JSON, not a record: a traceback
    assert "not an object" in told["index_problem"] and told["indexed"] == stats["indexed"]
    shutil.rmtree(copied)
    shutil.copytree(home[0], copied)  # its windows file gone: a query refuses it, stats says so
    (copied / "index" / f"windows-{stats['index_generation']}.faiss").unlink()
    told = lines(run((copied,), "stats", "--json"))[0]
    assert f"lacks windows-{stats['index_generation']}.faiss" in told["index_problem"]
    assert "Run `mirsearch index` on all the catalog's folders" in told["index_problem"]
    shutil.rmtree(copied / "index")  # none of its files: `index` refuses it, so none says index
    told = lines(run((copied,), "stats", "--json"))[0]["index_problem"]
    (answer,) = lines(run((copied,), "search", clip, "--json"))
    for problem in (told, answer["error"]):
        assert "MIRSEARCH_HOME" in problem and "index --rebuild" in problem, problem
        assert "to rebuild it" not in problem


def test_stats_names_the_problem_a_query_would_refuse_an_index_for(home, clip, tmp_path):
    """An index built by another model (a catalog of an older version) is refused by every
    query; stats had shown its kind and size and no problem."""
    copied = tmp_path / "copied"
    shutil.copytree(home[0], copied)
    generation = lines(run((copied,), "stats", "--json"))[0]["index_generation"]
    meta = copied / "index" / f"meta-{generation}.json"
    meta.write_text(json.dumps(json.loads(meta.read_text()) | {"model_hash": "0" * 64}))
    told = lines(run((copied,), "stats", "--json"))[0]
    (answer,) = lines(run((copied,), "search", clip, "--json"))
    assert "built by another model" in told["index_problem"]
    assert told["index_problem"] == answer["error"]


def test_a_database_url_or_a_home_that_cannot_be_used_is_told_in_a_line(tmp_path):
    for url in ("garbage", "nosuchdialect://x/y"):
        result = run((tmp_path / "home",), "stats", MIRSEARCH_DATABASE_URL=url)
        assert result.exit_code == 1 and "cannot be used" in result.output, result.output
        assert "Traceback" not in result.output
    (tmp_path / "a-file").write_text("not a folder")
    result = run((tmp_path / "a-file",), "stats")
    assert result.exit_code == 1 and "a-file" in result.output
    assert "Traceback" not in result.output


def test_plain_output_shows_a_tag_s_control_characters_escaped(home, tmp_path):
    """A title with a newline and a terminal escape (clear screen) stays on its line and acts
    on nothing; --json keeps it as it is."""
    folder = tmp_path / "music"
    folder.mkdir()
    title = "two\nlines\x1b[2J"
    samples = load(home[1] / "demo-02.ogg").samples[: 20 * 16_000]
    write(folder / "hostile.flac", samples, 16_000, tags={"title": title})
    own = (tmp_path / "home",)
    assert run(own, "index", folder).exit_code == 0
    plain = run(own, "tracks").output.splitlines()
    assert len(plain) == 2 and plain[0].endswith("two\\nlines\\x1b[2J") and "\x1b" not in plain[0]
    assert lines(run(own, "tracks", "--json"))[0]["title"] == title


def test_train_stopped_by_ctrl_c_says_no_checkpoint_was_written(home, tmp_path, monkeypatch):
    """Hours of training stopped by Ctrl-C had said click's "Aborted!" alone."""
    from mirsearch import training

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train", stopped)
    out = tmp_path / "model.pt"
    result = run(home, "train", labelled_folder(tmp_path / "data"), "--out", out)
    assert result.exit_code == 1
    assert f"interrupted: no checkpoint written; {out} is as it was" in result.output
    assert not out.exists()


def test_train_and_evaluate_refuse_bad_parameters_before_any_work(home, tmp_path, monkeypatch):
    """Each had come out as a traceback or a loss, most after all the decoding and training: a
    seed NumPy or scikit-learn cannot take, a learning rate that is not a number, a checkpoint
    path that is a folder or cannot be written, and the model in use, overwritten (the catalog
    indexed with it could not be read any more)."""
    from mirsearch import datasets
    from mirsearch.model_card import default_checkpoint_path

    def decode_all(paths, *, sample_rate):
        raise AssertionError("decoded before the parameters were checked")

    monkeypatch.setattr(datasets, "decode_all", decode_all)
    data = labelled_folder(tmp_path / "data")
    (tmp_path / "folder.pt").mkdir()
    (tmp_path / "report").write_text("a file where a folder goes")
    in_use = tmp_path / "in-use.pt"
    shutil.copy(default_checkpoint_path(), in_use)
    refused = {
        "--seed": ["train", data, "--seed", "-1"],
        "--seed ": ["evaluate", data, "--seed", str(2**32)],
        "--lr": ["train", data, "--lr", "nan"],
        "--weight-decay": ["train", data, "--weight-decay", "inf"],
        "is a folder": ["train", data, "--head", "--out", tmp_path / "folder.pt"],
        "cannot write in /proc": ["train", data, "--head", "--out", "/proc/model.pt"],
        "is the model in use": ["train", data, "--head", "--out", default_checkpoint_path()],
        "is the model in use ": ["train", data, "--out", in_use],
        "is a file": ["evaluate", data, "--out-dir", tmp_path / "report"],
        "use COLUMN=VALUE": ["evaluate", data, "--heldout", "soundfont"],
        "Invalid value for --log-dir": [
            "train",
            data,
            "--out",
            tmp_path / "new.pt",
            "--log-dir",
            tmp_path / "report",
        ],
        "--lr, --seed: for training a whole network, not with --head": [
            "train",
            data,
            "--head",
            "--lr",
            "0.1",
            "--seed",
            "3",
        ],
    }
    for expected, args in refused.items():
        result = run(home, *args, MIRSEARCH_MODEL=str(in_use) if expected.endswith(" ") else None)
        assert result.exit_code == 2, (args, result.output)
        assert expected.strip() in result.output and "Traceback" not in result.output, result.output
    assert read_card(in_use).sha256 == read_card(default_checkpoint_path()).sha256


def test_a_checkpoint_that_cannot_be_written_is_one_line_and_leaves_no_temporary_file(
    tmp_path, monkeypatch
):
    import torch

    def save(payload, path):
        Path(path).write_bytes(b"half a checkpoint")
        raise RuntimeError(
            "[enforce fail at inline_container.cc:747] . open file failed with strerror: "
            "No space left on device"
        )

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(ModelError, match=r"model.pt: .* \(No space left on device\)$"):
        saved_as(tmp_path / "model.pt", load_checkpoint())
    assert list(tmp_path.iterdir()) == []

    def interrupted(payload, path):  # Ctrl-C while it writes: the half file had been left
        Path(path).write_bytes(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        saved_as(tmp_path / "model.pt", load_checkpoint())
    assert list(tmp_path.iterdir()) == []


def killed_at_demo_03(engine, clip):
    """`match`'s answer of `clip`, but its worker killed at demo-03 (as the OOM killer ends one);
    at module level, for the worker to unpickle."""
    if Path(clip).name.startswith("demo-03"):
        os.kill(os.getpid(), signal.SIGKILL)
    return MATCH(engine, clip)


def test_a_query_worker_killed_leaves_an_error_line_for_each_clip_unanswered(home, monkeypatch):
    """A `match` worker ended abruptly had printed BrokenProcessPool's traceback and nothing for
    the clips after it: each clip unanswered now has its error line, in order (the clips done
    before the pool broke keep their answers: how many depends on the workers' pace)."""
    monkeypatch.setattr(queries, "_match", killed_at_demo_03)
    clips = sorted(str(p) for p in home[1].glob("demo-*"))
    result = run(home, "match", *clips, "--workers", "2", "--json")
    answered = lines(result)
    assert [a["query"] for a in answered] == clips and "Traceback" not in result.output
    told = ["matches" not in a for a in answered]  # those done before the pool broke: answered
    assert told[2] and told == sorted(told)  # then the killed one's and every one after it
    assert all("worker process ended abruptly" in a["error"] for a in answered if "error" in a)
    assert result.exit_code == (1 if all(told) else 0)
