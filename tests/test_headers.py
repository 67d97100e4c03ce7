"""What a file's own bytes say (headers.py): a WAV's data chunk, an Ogg file's last page and
chained streams, an MP4 without its index, an MP3 that counts its frames; and how decoding and
probing refuse a file cut short by them."""

from __future__ import annotations

import struct

import av
import numpy as np
import pytest
from conftest import SR, noise, tone

from mirsearch import audio, containers, headers
from mirsearch.encoding import write
from mirsearch.errors import AudioError


def test_streams_side_by_side_are_one_beginning_whatever_codecs_begin_between(write_audio):
    """Ogg streams multiplexed begin together (Theora, Skeleton, Vorbis): a beginning of a codec
    it does not know, between two it does, had made such a file "chained"."""
    opus = write_audio("one.ogg", tone(440.0, 3.0)).read_bytes()
    first_page_end = opus.index(b"OggS", 4)
    first = opus[:first_page_end]
    other = first[:14] + b"\x99\x99\x99\x99" + first[18:]  # the same beginning, another serial
    skeleton = b"OggS\x00\x02" + bytes(20) + b"\x01\x08" + b"fishead\x00"
    path = write_audio("x.ogg", tone(440.0, 1.0))
    path.write_bytes(first + skeleton + other + opus[first_page_end:])
    assert headers.ogg_streams_in_turn(path) == 1
    path.write_bytes(opus + opus)
    assert headers.ogg_streams_in_turn(path) == 2


def test_an_mp4_cut_inside_a_box_header_is_told_truncated(tmp_path):
    """The check for a missing index reads each top-level box's header: one cut inside its
    64-bit size had raised struct.error out of the refusal itself."""
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(b"\x00\x00\x00\x10ftypisom\x00\x00\x00\x00" + b"\x00\x00\x00\x01mdat\x00\x00")
    with pytest.raises(AudioError, match="truncated: an MP4 whose index"):
        containers.probe(cut)


def riff_chunk(kind: bytes, payload: bytes) -> bytes:
    """A RIFF chunk: its id, its size (little-endian), its payload padded to an even length."""
    return kind + struct.pack("<I", len(payload)) + payload + bytes(len(payload) % 2)


CHUNKS_BEFORE_DATA = {
    "comment": riff_chunk(b"LIST", b"INFO" + riff_chunk(b"ICMT", b"data from take 3\0")),
    "bext": riff_chunk(b"bext", b"data from take 3".ljust(602, b"\0")),
    "junk": riff_chunk(b"JUNK", bytes(8_000)),  # the data chunk past the first 4 KB
    "odd": riff_chunk(b"note", b"odd"),  # 3 bytes and a pad byte
}


@pytest.mark.parametrize("before_data", CHUNKS_BEFORE_DATA.values(), ids=CHUNKS_BEFORE_DATA.keys())
def test_a_wav_is_told_truncated_by_its_data_chunk_not_by_the_word_data(tmp_path, before_data):
    """A comment (LIST/INFO) or a Broadcast-WAV description (bext) saying "data" before the
    data chunk had been taken for it: a whole file was "truncated: its audio lacks 1,935,323,093
    bytes". The chunks are walked; a data chunk past 4 KB had not been found, and a file cut
    there was read shorter with no word."""
    pcm = (tone(440.0, 3.0) * 32_767).astype("<i2").tobytes()
    fmt = riff_chunk(b"fmt ", struct.pack("<HHIIHH", 1, 1, SR, 2 * SR, 2, 16))  # 16-bit mono
    body = b"WAVE" + fmt + before_data + riff_chunk(b"data", pcm)
    whole = b"RIFF" + struct.pack("<I", len(body)) + body
    path = tmp_path / "take.wav"
    path.write_bytes(whole)
    assert audio.load(path).info.duration_s == pytest.approx(3.0)
    path.write_bytes(whole[:-1_000])
    with pytest.raises(AudioError, match="truncated: its audio lacks 1,000 bytes"):
        audio.load(path)


@pytest.mark.parametrize(
    "open_size", [0xFFFFFFFF, 0x7FFFF000, 0x7FFFFFFF], ids=["ffmpeg", "sox", "arecord"]
)
def test_a_wav_streamed_with_its_sizes_left_open_is_read_whole(tmp_path, open_size):
    """A WAV written to a pipe (`ffmpeg ... -f wav -`, `sox ... -t wav -`, `arecord`) cannot go
    back to write its sizes and leaves them at what its writer puts there: not a data chunk of
    2 or 4 GB, cut short."""
    pcm = (tone(440.0, 3.0) * 32_767).astype("<i2").tobytes()
    fmt = riff_chunk(b"fmt ", struct.pack("<HHIIHH", 1, 1, SR, 2 * SR, 2, 16))
    path = tmp_path / "piped.wav"
    size = struct.pack("<I", open_size)
    path.write_bytes(b"RIFF" + size + b"WAVE" + fmt + b"data" + size + pcm)
    assert headers.missing_bytes(path, "wav") == 0
    assert audio.load(path).samples.size == 3 * SR


def quality_encoded(path, samples: np.ndarray, *, container: str, codec: str, **options):
    """Mono `samples` at SR encoded at a quality (LAME's V2, FFmpeg AAC's q 2), not a bit rate:
    the bit rate follows the sound, low through a quiet start. `options` are the muxer's (an
    MP3 has its Xing header counting its frames unless write_xing="0")."""
    with av.open(str(path), "w", format=container, options=options) as out:
        stream = out.add_stream(codec, rate=SR, layout="mono")
        stream.codec_context.qscale = True
        stream.codec_context.global_quality = 2 * 118  # the quality times FF_QP2LAMBDA
        frame = av.AudioFrame.from_ndarray(samples[None], format="flt", layout="mono")
        frame.sample_rate = SR
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono")
        for converted in resampler.resample(frame):
            out.mux(stream.encode(converted))
        out.mux(stream.encode(None))
    return path


def id3_tag(size: int, *, footer: bool) -> bytes:
    """An ID3v2.4 tag of `size` bytes of padding (as cover art makes a tag of kilobytes), its
    size written 7 bits a byte, with its footer or not."""
    syncsafe = bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))
    flags = 0x10 if footer else 0
    return (
        b"ID3\x04\x00"
        + bytes([flags])
        + syncsafe
        + bytes(size)
        + (b"3DI\x04\x00" + bytes([flags]) + syncsafe if footer else b"")
    )


@pytest.mark.parametrize("footer", [False, True])
def test_an_mp3_behind_a_large_tag_is_told_truncated_when_cut(tmp_path, footer):
    """The header counting an MP3's frames is found behind an ID3v2 tag of kilobytes (its
    size read 7 bits a byte, its footer skipped): a copy cut short is refused, not read shorter
    with no word."""
    x = np.concatenate([np.zeros(2 * SR, dtype=np.float32), noise(4.0)])
    path = quality_encoded(
        tmp_path / "art.mp3", x, container="mp3", codec="libmp3lame", id3v2_version="0"
    )
    tagged = id3_tag(3_000, footer=footer) + path.read_bytes()
    path.write_bytes(tagged)
    assert headers.states_duration(path, "mp3")
    assert audio.load(path).samples.size / SR == pytest.approx(6.0, abs=0.15)
    path.write_bytes(tagged[: len(tagged) // 2])
    with pytest.raises(AudioError, match="truncated: decoded"):
        audio.load(path)


def test_a_length_ffmpeg_estimates_from_the_bit_rate_is_no_promise_a_cut_breaks(tmp_path):
    """An MP3 whose first frame counts none of its frames (no Xing/Info or VBRI header), ADTS
    AAC, and two MP3s joined with `cat` (FFmpeg leaves out the first one's header) state no
    length: FFmpeg estimates it from the first frames' bit rate. 6 s of sound beginning with 2 s
    of silence "declared" 9.4 s (AAC 10.6 s) and had been refused as truncated. An MP3 whose
    header counts its frames is still refused when cut short."""
    x = np.concatenate([np.zeros(2 * SR, dtype=np.float32), noise(4.0)])
    first = write(tmp_path / "a.mp3", tone(440.0, 2.0), SR, bit_rate=8_000)
    second = write(tmp_path / "b.mp3", tone(660.0, 4.0), SR, bit_rate=64_000)
    joined = tmp_path / "joined.mp3"
    joined.write_bytes(first.read_bytes() + second.read_bytes())
    for path in (
        quality_encoded(
            tmp_path / "vbr.mp3", x, container="mp3", codec="libmp3lame", write_xing="0"
        ),
        quality_encoded(tmp_path / "vbr.aac", x, container="adts", codec="aac"),
        joined,
    ):
        assert containers.probe(path).duration_s > 6.0 / audio.TRUNCATION_TOLERANCE
        assert audio.load(path).samples.size / SR == pytest.approx(6.0, abs=0.15)
    counted = quality_encoded(tmp_path / "counted.mp3", x, container="mp3", codec="libmp3lame")
    counted.write_bytes(counted.read_bytes()[: counted.stat().st_size // 2])
    with pytest.raises(AudioError, match="truncated: decoded"):
        audio.load(counted)


def test_an_ogg_file_cut_within_its_last_page_is_refused_one_ending_between_pages_is_not(
    write_audio, shared_audio, tmp_path
):
    """Ogg declares no length (FFmpeg read half a Vorbis file as a shorter track); a page cut
    short tells. A live recording may end between pages, without the end-of-stream page."""
    vorbis = (shared_audio / "hedgewars__brick.ogg").read_bytes()
    cut = tmp_path / "cut.ogg"
    cut.write_bytes(vorbis[:-1])
    with pytest.raises(AudioError, match="truncated: its last page lacks 1 bytes"):
        audio.load(cut)
    cut.write_bytes(vorbis[: len(vorbis) // 3])  # the page it ends in lacks what it declares
    with pytest.raises(AudioError, match=r"truncated: its last page lacks [\d,]+ bytes$"):
        audio.load(cut)
    opus = write_audio("live.opus", tone(440.0, 20.0)).read_bytes()
    between = tmp_path / "between.opus"
    between.write_bytes(opus[: opus.rfind(b"OggS")])  # the end-of-stream page left out
    assert audio.load(between).samples.size > 19 * SR


def test_a_chained_ogg_file_is_refused_not_read_as_its_first_stream(write_audio, tmp_path):
    """Two streams back to back (`cat a.ogg b.ogg`, an internet-radio dump): FFmpeg reads the
    first only, and the file had been indexed at half its length with no word."""
    first = write_audio("first.ogg", tone(440.0, 10.0)).read_bytes()
    second = write_audio("second.ogg", tone(660.0, 10.0)).read_bytes()
    chained = tmp_path / "chained.ogg"
    chained.write_bytes(first + second)
    with pytest.raises(AudioError, match=r"a chained Ogg file \(2 streams one after another\)"):
        audio.load(chained)
    assert audio.load(tmp_path / "first.ogg").samples.size > 9 * SR
