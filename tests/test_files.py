"""Finding audio files: by name or by content, hidden ones skipped, names the catalog can store."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import tone, write_video

from mirsearch.audio import load
from mirsearch.errors import AudioError
from mirsearch.files import AUDIO_EXTENSIONS, discover, looks_like_audio


def test_looks_like_audio_by_content_not_by_name(write_audio, tmp_path):
    real = write_audio("x.ogg", tone(330.0, 1.0))
    disguised = tmp_path / "notes.txt"
    disguised.write_bytes(real.read_bytes())
    text = tmp_path / "fake.mp3"
    text.write_text("not audio at all")
    assert looks_like_audio(disguised)
    assert not looks_like_audio(text)


def test_discover_finds_audio_by_name_or_content_and_skips_hidden_files(write_audio, tmp_path):
    real = write_audio("song.ogg", tone(330.0, 1.0))
    (tmp_path / "sub" / ".cache").mkdir(parents=True)
    (tmp_path / "sub" / "mystery.bin").write_bytes(real.read_bytes())
    (tmp_path / "sub" / ".cache" / "copy.ogg").write_bytes(real.read_bytes())
    (tmp_path / ".hidden.ogg").write_bytes(real.read_bytes())
    (tmp_path / "readme.bin").write_text("hello")
    found = discover([tmp_path, real])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["song.ogg", "sub/mystery.bin"]
    with pytest.raises(AudioError, match="no such file or folder"):
        discover([tmp_path / "nowhere"])
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(AudioError, match="loop: a link that leads to no file"):
        discover([tmp_path / "loop"])
    os.mkfifo(tmp_path / "pipe.wav")  # had been walked as a folder: "Not a directory"
    with pytest.raises(AudioError, match="pipe.wav: neither a file nor a folder"):
        discover([tmp_path / "pipe.wav"])


def test_cover_art_beside_the_music_is_not_taken_for_audio(tmp_path):
    """A JPEG begins with 0xFF as an MPEG audio frame does (FF D8 against FF Ex/Fx): every album
    folder's folder.jpg would have been recorded as a failed track."""
    jpeg = bytes.fromhex("ffd8ffe000104a46494600010100000100010000") + bytes(200)
    (tmp_path / "folder.jpg").write_bytes(jpeg)
    frame = tmp_path / "raw"  # an MP3 frame header, no ID3 tag before it
    frame.write_bytes(bytes.fromhex("fffb9064") + bytes(200))
    assert not looks_like_audio(tmp_path / "folder.jpg")
    assert discover([tmp_path]) == [frame.resolve()]


def test_a_link_to_a_folder_is_not_walked_a_link_to_a_file_is_read(write_audio, tmp_path):
    """Links to folders are not followed (a link to the folder itself, or to one outside the
    paths named, would have the walk loop or index music no one named); a link to a file is
    read, under the file's own path."""
    for folder in ("music", "elsewhere", "single"):
        (tmp_path / folder).mkdir()
    music = tmp_path / "music"
    song = write_audio("music/song.ogg", tone(330.0, 1.0))
    other = write_audio("elsewhere/other.ogg", tone(440.0, 1.0))
    single = write_audio("single/one.ogg", tone(550.0, 1.0))
    (music / "again").symlink_to(music)
    (music / "more").symlink_to(tmp_path / "elsewhere")
    (music / "linked.ogg").symlink_to(single)
    assert discover([music]) == sorted([song.resolve(), single.resolve()])
    assert discover([music / "more"]) == [other.resolve()]  # a link named is the folder it names


@pytest.mark.parametrize(("container", "codec"), [("ac3", "ac3"), ("w64", "pcm_s16le")])
def test_discover_finds_what_ffmpeg_reads_and_queries_take(container, codec, tmp_path):
    """AC-3 and Wave64 files were matched when named as queries but left out of `index`, with
    no word: neither their extension nor their first bytes were known (a Wave64 file is found
    by its first bytes too, under any name)."""
    named = tmp_path / f"tone.{container}"
    with av.open(str(named), "w", format=container) as out:
        stream = out.add_stream(codec, rate=48_000, layout="mono")
        samples = tone(440.0, 1.0, sr=48_000)[None]
        if stream.format.name == "s16":
            samples = (samples * 32_767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples, format=stream.format.name, layout="mono")
        frame.sample_rate = 48_000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    expected = [named.resolve()]
    if container == "w64":
        (tmp_path / "renamed.bin").write_bytes(named.read_bytes())
        expected.insert(0, (tmp_path / "renamed.bin").resolve())
    assert discover([tmp_path]) == expected
    assert load(named).info.duration_s == pytest.approx(1.0, abs=0.05)


def test_discover_finds_video_containers_by_name_and_by_content(tmp_path):
    """MPEG-TS, FLV and MPEG-PS videos had been left out of `index` with no word (neither their
    extension nor their first bytes were known), and MOV, MKV, AVI... found by content alone."""
    found = []
    for suffix in (".ts", ".flv", ".mpg"):
        video = write_video(tmp_path / f"clip{suffix}", [tone(440.0, 1.0)], video_s=1.0)
        unnamed = tmp_path / suffix[1:]  # no extension: found by its first bytes
        unnamed.write_bytes(video.read_bytes())
        found += [video.resolve(), unnamed.resolve()]
    (tmp_path / "notes").write_text("Good morning\n" * 100)  # a G first is no transport stream
    assert discover([tmp_path]) == sorted(found)
    assert {".mov", ".mkv", ".m4v", ".avi", ".m2ts", ".3gp", ".wmv", ".vob"} <= AUDIO_EXTENSIONS


def test_discover_leaves_out_dangling_links_and_names_that_are_not_utf8(write_audio, tmp_path):
    real = write_audio("song.ogg", tone(330.0, 1.0))
    (tmp_path / "gone.ogg").symlink_to(tmp_path / "nowhere.ogg")
    (tmp_path / os.fsdecode(b"bad\xffname.ogg")).write_bytes(real.read_bytes())
    assert discover([tmp_path]) == [real.resolve()]


def test_discover_says_which_folder_it_could_not_list(write_audio, tmp_path, unlistable, caplog):
    real = write_audio("song.ogg", tone(330.0, 1.0))
    (tmp_path / "locked").mkdir()
    unlistable(tmp_path / "locked")
    assert discover([tmp_path]) == [real.resolve()]
    assert f"{tmp_path / 'locked'} left out: Permission denied" in caplog.text


def test_discover_leaves_out_a_file_it_cannot_reach_and_walks_on(
    write_audio, tmp_path, monkeypatch, caplog
):
    """A folder that can be listed but not entered (chmod 644) let the walk list its files, then
    stat() of each raised Permission denied: the whole index run stopped, nothing indexed, and
    a query over the folder printed no line for any clip."""
    real = write_audio("song.ogg", tone(330.0, 1.0))
    (tmp_path / "noexec").mkdir()
    hidden = write_audio("noexec/y.ogg", tone(440.0, 1.0))
    is_file = Path.is_file

    def denied(path):  # what stat() says of a file in such a folder (to anyone but root)
        if path == hidden:
            raise PermissionError(13, "Permission denied", str(path))
        return is_file(path)

    monkeypatch.setattr(Path, "is_file", denied)
    assert discover([tmp_path]) == [real.resolve()]
    assert f"{hidden} left out: Permission denied" in caplog.text


def test_discover_walks_a_tree_deeper_than_the_recursion_limit(write_audio, tmp_path):
    real = write_audio("song.ogg", tone(330.0, 1.0))
    deep = tmp_path / "tree"
    deep.mkdir()
    folder = deep
    for _ in range(1_100):  # os.walk of Python 3.11 recursed once a level: RecursionError
        folder /= "d"
        folder.mkdir()
    (folder / "x.ogg").write_bytes(real.read_bytes())
    (deep / "top.ogg").write_bytes(real.read_bytes())
    expected = sorted([(folder / "x.ogg").resolve(), (deep / "top.ogg").resolve()])
    try:
        found = discover([deep])
    finally:  # bottom up: shutil.rmtree (pytest's cleanup) recurses a level a call too
        (folder / "x.ogg").unlink()
        while folder != deep:
            folder.rmdir()
            folder = folder.parent
    assert found == expected
