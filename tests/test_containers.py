"""What a container declares, read before decoding: tags, lengths, and files that are not audio."""

from __future__ import annotations

import tracemalloc
from fractions import Fraction

import av
import numpy as np
import pytest
from conftest import SR, noise, tone, write_video

from mirsearch import audio, containers
from mirsearch.config import AudioConfig
from mirsearch.errors import AudioError, EmptyAudioError, NotAudioError, TooLongError
from mirsearch.files import looks_like_audio


def test_tags_are_read_from_the_container(write_audio):
    path = write_audio(
        "tagged.flac",
        tone(220.0, 2.0),
        title="Song <1>",
        artist="Band",
        album="Record",
        genre="jazz",
    )
    tags = containers.probe(path).tags
    assert tags == {"title": "Song <1>", "artist": "Band", "album": "Record", "genre": "jazz"}


def test_a_blank_tag_is_no_tag(write_audio):
    """A title of spaces had been stored as "", which API clients falling back to the path on
    a missing title showed as nothing."""
    path = write_audio("blank.flac", tone(220.0, 2.0), title="   ", artist=" Band ")
    assert containers.probe(path).tags == {"artist": "Band"}


def test_a_tag_of_invisible_characters_is_no_tag_and_a_genre_drops_them(write_audio):
    """A title of zero-width spaces had made an entry no one could see or click, and "jazz" with
    a zero-width space a genre of its own that looked like jazz and that no filter found."""
    path = write_audio(
        "invisible.flac",
        tone(220.0, 2.0),
        title="\u200b\u200b",
        artist="\u2066\u2069",
        album="\u202eevil",  # shown as the tag says: the pages isolate it
        genre="jazz\u200b; \ufeffRock\u00a0 and  Roll; \u200b; Shoegaze\u200d\u2764",
    )
    assert containers.probe(path).tags == {
        "album": "\u202eevil",
        "genre": "jazz; Rock and Roll; Shoegaze\u200d\u2764",  # a joiner inside stays
    }


def test_a_joiner_stays_between_two_letters_only():
    """A zero-width joiner or non-joiner shapes the characters either side of it; at a genre's
    end, beside a space, or where another invisible character stands, it shapes nothing and is
    dropped, as every other format character is ("\u200drock" was a genre of its own)."""
    assert containers.genre_name("\u200drock\u200c") == "rock"
    assert containers.genre_name("rock \u200d pop") == "rock pop"
    assert containers.genre_name("a\u200d\u200bb") == "ab"
    assert containers.genre_name("\u0915\u094d\u200d\u0937") == "\u0915\u094d\u200d\u0937"


def test_a_stream_s_own_tags_come_before_the_file_s(tmp_path):
    """A Matroska file titled as a whole whose audio track has a title of its own: the track's
    is the music's (as an Ogg file's comments, which FFmpeg gives as the stream's); what the
    track does not say is read from the file."""
    path = tmp_path / "tagged.mka"
    with av.open(str(path), "w", format="matroska") as out:
        out.metadata.update(title="The Record", artist="Label")
        stream = out.add_stream("flac", rate=SR, layout="mono")
        stream.metadata["title"] = "The Song"
        frame = av.AudioFrame.from_ndarray(
            (tone(440.0, 1.0) * 32_767).astype(np.int16)[None], format="s16", layout="mono"
        )
        frame.sample_rate, frame.time_base, frame.pts = SR, Fraction(1, SR), 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    assert containers.probe(path).tags == {"title": "The Song", "artist": "Label"}


def test_a_tag_is_kept_to_the_length_a_filter_takes(write_audio):
    """A 5,000-character genre tag was listed by `genres` and refused by every filter (at most
    1,000 characters); a 2 MB title went out with every result naming the track."""
    path = write_audio("long.flac", tone(220.0, 2.0), title="t" * 5_000, genre="g" * 5_000)
    tags = containers.probe(path).tags
    assert tags == {"title": "t" * containers.TAG_CHARS, "genre": "g" * containers.TAG_CHARS}


def test_tags_are_kept_composed(write_audio):
    """A tag written on a Mac spells é as e and an accent: kept so, the genre filter and the
    genre chips told "électro" from "électro"."""
    path = write_audio("mac.flac", tone(220.0, 2.0), title="Beyonce\u0301", genre="E\u0301lectro")
    assert containers.probe(path).tags == {"title": "Beyoncé", "genre": "Électro"}


def test_a_genre_tag_of_several_values_is_kept_apart_by_a_semicolon(write_audio):
    path = write_audio("several.flac", tone(220.0, 2.0), genre="Rock;Pop ; ;")
    assert containers.probe(path).tags == {"genre": "Rock; Pop"}


def test_zero_length_file_is_empty(tmp_path):
    path = tmp_path / "empty.mp3"
    path.write_bytes(b"")
    with pytest.raises(EmptyAudioError, match="empty"):
        audio.load(path)


@pytest.mark.parametrize("content", [b"hello, this is a text file\n" * 50, bytes(range(256)) * 40])
def test_text_or_random_bytes_named_mp3_is_not_audio(tmp_path, content):
    path = tmp_path / "song.mp3"
    path.write_bytes(content)
    with pytest.raises(AudioError, match="song.mp3"):
        audio.load(path)
    assert not looks_like_audio(tmp_path / "song.mp3") or content[:3] == b"ID3"


def test_over_long_file_is_refused_before_decoding(write_audio):
    path = write_audio("long.flac", tone(440.0, 30.0))
    config = AudioConfig(max_duration_s=10.0)
    with pytest.raises(TooLongError, match="limit"):
        containers.probe(path, config=config)
    tracemalloc.start()
    with pytest.raises(TooLongError):
        audio.load(path, config=config)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 30 * SR * 4 / 2, "the whole file was decoded before the limit was checked"


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        audio.load(tmp_path / "nope.wav")


def test_not_audio_error_for_an_image(tmp_path):
    path = tmp_path / "cover.ogg"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(500))
    with pytest.raises(NotAudioError):
        audio.load(path)


def test_the_audio_stream_ffmpeg_would_choose_is_described(tmp_path):
    """The one marked default, as players choose, not the first; another is described when
    named (its stream number among the file's audio streams)."""
    path = write_video(tmp_path / "two.mkv", [noise(2.0), tone(440.0, 3.0)], video_s=3.0, default=1)
    chosen = containers.probe(path)
    assert (chosen.stream, chosen.streams) == (1, 2)
    assert chosen.duration_s == pytest.approx(3.0, abs=0.1)
    other = containers.probe(path, stream=0)
    assert (other.stream, other.streams) == (0, 2)
    assert other.duration_s == pytest.approx(2.0, abs=0.1)
