"""What an audio file's container declares (AudioInfo: format, codec, rate, duration, tags) of
the audio stream read: the one FFmpeg would choose, or another named.

It is read without decoding, and a file that is not audio, or longer than
AudioConfig.max_duration_s, is refused there.
"""

from __future__ import annotations

import mmap
import os
import struct
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import av

from mirsearch.config import AudioConfig
from mirsearch.errors import AudioError, EmptyAudioError, NotAudioError, TooLongError
from mirsearch.files import shown, storable

TAG_KEYS = ("title", "artist", "album", "genre")  # kept composed (NFC): é one character
GENRES_APART = "; "  # between the values of a genre tag that holds several (Catalog reads each)
# Unicode categories drawn as nothing: controls, format characters (zero-width space, direction
# marks, BOM) and separators. A tag of these only is blank; a genre loses its format characters.
INVISIBLE = {"Cc", "Cf", "Zs", "Zl", "Zp"}
JOINERS = "\u200c\u200d"  # format characters that shape the letters or emoji either side of them
# How much of a WAV file FFmpeg reads when it opens one. By default (5 MB) its check that 16-bit
# PCM is not another codec behind a PCM header reads every packet up to 32 and tries its probes
# on them: in a 10 s clip at 16 kHz, 4.5 of the 16 ms its decoding took, paid by both opens.
# 4 KB still finds MP3 frames behind a PCM header (tests/test_audio.py).
WAV_PROBE_BYTES = 4096
OGG_PAGE_HEADER = 27  # bytes of an Ogg page before its lacing values (one per segment)
# what the first packet of a Vorbis, Opus, FLAC, Speex or Theora stream in Ogg begins with
OGG_FIRST_PACKETS = (b"\x01vorbis", b"OpusHead", b"\x7fFLAC", b"Speex   ", b"\x80theora")
MP4_BOXES_READ = 64  # top-level boxes of an MP4 looked at for its index (moov)
# characters of a tag kept (as track_filters.MAX_TEXT, the longest genre a filter takes): a genre of
# 5,000 was listed and could not be asked for, and a 2 MB title went out with every result
TAG_CHARS = 1_000
MP3_HEADER_BYTES = 54  # of an MP3's first frame, to the end of a Xing/Info or VBRI frame count
WAV_CHUNKS_READ = 64  # chunks of a WAV looked at for its data chunk (fmt, LIST, bext, JUNK...)
OGG_TAIL_BYTES = 70_000  # the end of an Ogg file read for its last page (at most 65,307 bytes)


@dataclass(frozen=True)
class AudioInfo:
    """What the container says about a file, before decoding."""

    path: str
    format: str  # FFmpeg's container name, e.g. "ogg", "mp3", "mov,mp4,m4a,3gp,3g2,mj2"
    codec: str  # e.g. "vorbis", "mp3float", "aac"
    sample_rate: int  # of the file, not of the decoded signal
    channels: int
    duration_s: float  # the audio stream's, declared (`_duration_s`); exact after `audio.load`
    tags: dict[str, str] = field(default_factory=dict)
    stream: int = 0  # which of the file's audio streams this is: FFmpeg's specifier "a:{stream}"
    streams: int = 1  # how many audio streams the file holds


def probe(
    path: Path, *, config: AudioConfig = AudioConfig(), stream: int | None = None
) -> AudioInfo:
    """The container's description of `path`'s audio stream number `stream` (of its audio
    streams, from 0), by default the one FFmpeg would choose (`chosen_stream`); refuses
    non-audio and over-long files undecoded."""
    path = Path(path)
    with open_container(path) as container:
        info = _info(path, container, chosen_stream(container) if stream is None else stream)
    _check_declared_length(info, config)
    return info


def packets_length_s(path: Path, stream: int) -> float:
    """How long audio stream number `stream` of `path` lasts by its packets' timestamps, read
    without decoding them (a minute of Opus in a few milliseconds): for a file that declares no
    length, as a browser's recording (a live WebM) does not. Up to an unreadable packet, if any."""
    end = 0
    with open_container(path) as container:
        audio = container.streams.audio[stream]
        try:
            for packet in container.demux(audio):
                if packet.pts is not None and packet.duration is not None:
                    end = max(end, packet.pts + packet.duration)
        except av.error.FFmpegError:
            pass
        return float(end * audio.time_base) if audio.time_base is not None else 0.0


def open_container(path: Path) -> av.container.InputContainer:
    """`path` opened by FFmpeg, refused with a readable error unless it holds an audio stream."""
    if not path.is_file():
        raise AudioError(f"{path}: {'not a regular file' if path.exists() else 'no such file'}")
    if not storable(path):
        raise AudioError(
            f"{shown(path)}: the file's name is not UTF-8, which FFmpeg needs: rename it"
        )
    if path.stat().st_size == 0:
        raise EmptyAudioError(f"{path}: the file is empty (0 bytes)")
    try:
        options = {"probesize": str(WAV_PROBE_BYTES)} if _is_wav(path) else {}
    except OSError as exc:  # no permission to read it
        raise AudioError(f"{path}: the file cannot be read ({reason(exc)})") from exc
    try:
        container = av.open(str(path), metadata_errors="ignore", options=options)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        if _mp4_without_index(path):
            raise AudioError(
                f"{path}: the file is truncated: an MP4 whose index (its moov box) is missing, "
                "as an upload or download cut short before its end leaves it"
            ) from exc
        raise NotAudioError(f"{path}: not an audio file FFmpeg can read ({reason(exc)})") from exc
    if not container.streams.audio:
        container.close()
        raise NotAudioError(f"{path}: the file holds no audio stream")
    return container


def _mp4_without_index(path: Path) -> bool:
    """Whether `path` begins as an MP4 (or MOV, M4A) does, its top-level boxes holding no
    `moov`: the index most writers put last, so a file cut short has the sound without it."""
    boxes = []
    with open(path, "rb") as f:
        size_of_file = os.fstat(f.fileno()).st_size
        at = 0
        while at + 8 <= size_of_file and len(boxes) < MP4_BOXES_READ:
            f.seek(at)
            header = f.read(16)
            size, kind = struct.unpack_from(">I4s", header)
            if size == 1:  # a 64-bit size follows the type (none where the file ends first)
                size = struct.unpack_from(">Q", header, 8)[0] if len(header) == 16 else 0
            boxes.append(kind)
            if size < 8:  # 0: the box runs to the end of the file
                break
            at += size
    return bool(boxes) and boxes[0] == b"ftyp" and b"moov" not in boxes


def chosen_stream(container: av.container.InputContainer) -> int:
    """Which of the container's audio streams FFmpeg would choose (av_find_best_stream, as its
    players do: the one marked default first), counted among its audio streams. The first had
    been read, whatever was marked: a commentary track put first hid the music after it."""
    best = container.streams.best("audio")
    return container.streams.audio.index(best) if best is not None else 0


def reason(exc: Exception) -> str:
    """What an FFmpeg or OS error says, for a message."""
    return getattr(exc, "strerror", None) or str(exc)


def missing_bytes(path: Path, container_format: str) -> int:
    """How many bytes a WAV or Ogg file says it holds past its end (a copy or download cut
    short); 0 for other containers, whose cut is found by decoding (`audio.load`)."""
    if container_format == "wav":
        return _wav_missing_bytes(path)
    if container_format == "ogg":
        return _ogg_missing_bytes(path)
    return 0


def states_duration(path: Path, container_format: str) -> bool:
    """Whether `path` states the duration FFmpeg gives it, so that decoding less means a cut.
    ADTS AAC states none, nor does an MP3 without a header counting its frames: FFmpeg
    estimates it from the first frames' bit rate (a 60 s VBR MP3 opening on a tone: 144.5 s),
    which a cut shrinks too. Such files had been refused as truncated."""
    if container_format == "aac":
        return False
    return container_format != "mp3" or _mp3_frames_counted(path)


def _mp3_frames_counted(path: Path) -> bool:
    """Whether an MP3 file's first frame, after its ID3v2 tags, is a Xing/Info or VBRI header
    counting its frames, from which FFmpeg takes the duration. As FFmpeg, a Xing/Info count is
    left out where the file runs on over 1/16 past the size the header gives (`cat a.mp3 b.mp3`
    keeps a.mp3's header)."""
    with open(path, "rb") as f:
        size_of_file = os.fstat(f.fileno()).st_size
        at = 0
        while (tag := f.read(10))[:3] == b"ID3" and len(tag) == 10:
            size = 0
            for byte in tag[6:10]:  # syncsafe: 7 bits a byte
                size = size << 7 | byte & 0x7F
            at += 10 + size + (10 if tag[5] & 0x10 else 0)  # 0x10: a footer follows
            f.seek(at)
        f.seek(at)
        frame = f.read(MP3_HEADER_BYTES)
    if len(frame) < 4 or frame[0] != 0xFF or frame[1] & 0xE6 != 0xE2:  # not Layer III
        return False
    if frame[36:40] == b"VBRI":  # 32 bytes after the frame header, whatever the mode
        return frame[40:42] == b"\x00\x01" and int.from_bytes(frame[50:54], "big") > 0
    mpeg1, mono = frame[1] & 0x18 == 0x18, frame[3] >> 6 == 3
    xing = 4 + ((17 if mono else 32) if mpeg1 else (9 if mono else 17))  # after side info
    flags = int.from_bytes(frame[xing + 4 : xing + 8], "big")
    if frame[xing : xing + 4] not in (b"Xing", b"Info") or not flags & 1:  # 1: frames counted
        return False
    frames = int.from_bytes(frame[xing + 8 : xing + 12], "big")
    header_size = int.from_bytes(frame[xing + 12 : xing + 16], "big") if flags & 2 else 0
    beyond = size_of_file - at - 4 - header_size  # as FFmpeg measures, from the frame's data
    return frames > 0 and not (header_size and beyond > header_size >> 4)


def ogg_streams_in_turn(path: Path) -> int:
    """How many Ogg streams `path` holds one after another: more than one in a chained file (an
    internet-radio dump, `cat a.ogg b.ogg`), of which FFmpeg reads the first only.

    A stream begins on a page flagged "beginning of stream" whose packet is a codec's first
    header; streams side by side (audio and video) begin together, so they count once. A page
    is found by its capture pattern, which the audio data can hold by chance: a beginning is
    taken only where a codec's header follows it.
    """
    streams, after_data = 0, True
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        at = data.find(b"OggS")
        while at >= 0 and at + OGG_PAGE_HEADER <= len(data):
            packet = at + OGG_PAGE_HEADER + data[at + 26]  # after the header and lacing values
            if data[at + 5] & 0x02 and data[packet : packet + 8].startswith(OGG_FIRST_PACKETS):
                streams += after_data
                after_data = False
            elif data[at + 4] == 0 and not data[at + 5] & 0x02:  # data, not a beginning of a
                after_data = True  # codec not listed (Skeleton) among the streams side by side
            at = data.find(b"OggS", at + OGG_PAGE_HEADER)
    return streams


def _ogg_missing_bytes(path: Path) -> int:
    """For an Ogg file (Vorbis, Opus, FLAC), how many bytes of its last page are not in it (at
    least; a cut within the page's header or lacing says less than the whole).

    Ogg declares no length, but a page is cut short only when the file is. (A stream recorded
    live may end without its end-of-stream page, at a page boundary: that is not refused.)
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(max(0, size - OGG_TAIL_BYTES))
        tail = f.read()
    at = tail.rfind(b"OggS")
    if at < 0 or tail[at + 4 : at + 5] != b"\x00":  # no page in reach, or not a page header
        return 0
    header = tail[at : at + OGG_PAGE_HEADER]
    if len(header) < OGG_PAGE_HEADER:
        return OGG_PAGE_HEADER - len(header)
    segments = header[-1]
    lacing = tail[at + OGG_PAGE_HEADER : at + OGG_PAGE_HEADER + segments]
    if len(lacing) < segments:
        return segments - len(lacing)
    return max(0, at + OGG_PAGE_HEADER + segments + sum(lacing) - len(tail))


def _wav_missing_bytes(path: Path) -> int:
    """For a RIFF/WAVE file, how many bytes of the declared data chunk are not in the file.

    The data chunk is found as FFmpeg finds it, by walking the chunks from the first: each a
    4-byte id, a little-endian size, and the payload padded to an even length. The first b"data"
    anywhere in the first 4 KB had been taken for it: a comment or a Broadcast-WAV description
    saying "data" made a whole file "truncated: its audio lacks 1,935,323,093 bytes", and a data
    chunk past 4 KB (behind a large JUNK or bext chunk) was not checked.
    """
    with open(path, "rb") as f:
        size_of_file = os.fstat(f.fileno()).st_size
        head = f.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return 0
        at = 12
        for _ in range(WAV_CHUNKS_READ):
            f.seek(at)
            header = f.read(8)
            if len(header) < 8:  # the file ends before a data chunk
                return 0
            kind, size = struct.unpack("<4sI", header)
            if kind == b"data":
                if size in (0, 0xFFFFFFFF):  # streamed WAVs leave the size open
                    return 0
                return max(0, at + 8 + size - size_of_file)
            at += 8 + size + size % 2
    return 0


def _is_wav(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(12)
    return head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE"


def _info(path: Path, container: av.container.InputContainer, position: int) -> AudioInfo:
    stream = container.streams.audio[position]
    if stream.codec_context is None:  # a codec FFmpeg has no decoder for
        raise NotAudioError(f"{path}: FFmpeg has no decoder for the audio in this file")
    tags = {}
    for source in (stream.metadata, container.metadata):
        for key, value in source.items():
            key, value = key.lower(), unicodedata.normalize("NFC", str(value).strip())
            if key == "genre":  # several values (GENRE=Rock, GENRE=Pop) reach us as "Rock;Pop"
                value = GENRES_APART.join(filter(None, map(genre_name, value.split(";"))))
            if key in TAG_KEYS and visible(value) and key not in tags:  # a blank tag is no tag
                tags[key] = value[:TAG_CHARS].rstrip()
    return AudioInfo(
        path=str(path),
        format=container.format.name,
        codec=stream.codec_context.name,
        sample_rate=stream.codec_context.sample_rate or 0,
        channels=stream.codec_context.channels or 0,
        duration_s=max(0.0, _duration_s(container, stream)),
        tags=tags,
        stream=position,
        streams=len(container.streams.audio),
    )


def visible(text: str | None) -> bool:
    """Whether `text` has a character that is drawn: a title of zero-width spaces is blank."""
    return any(unicodedata.category(c) not in INVISIBLE for c in text or "")


def genre_name(text: str) -> str:
    """A genre as it is compared: without the format characters no one sees ("jazz" and a
    "jazz" with a zero-width space had been two genres), its spaces single. A joiner between
    two letters stays: it shapes them."""
    kept = (
        c
        for i, c in enumerate(text)
        if unicodedata.category(c) != "Cf"
        or (c in JOINERS and visible(text[i - 1 : i]) and visible(text[i + 1 : i + 2]))
    )
    return " ".join("".join(kept).split())


def _duration_s(container: av.container.InputContainer, stream: av.AudioStream) -> float:
    """How long `stream` declares it lasts: its own duration where the container gives one, else
    the DURATION tag Matroska muxers write per stream, else the container's. A video's container
    lasts as long as its longest stream, often the picture: a video running on past its music
    had been refused as truncated."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    try:
        hours, minutes, seconds = stream.metadata["DURATION"].split(":")  # 00:03:15.021000000
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except (KeyError, ValueError):
        pass
    return container.duration / av.time_base if container.duration is not None else 0.0


def _check_declared_length(info: AudioInfo, config: AudioConfig) -> None:
    if info.duration_s > config.max_duration_s:
        raise TooLongError(
            f"{info.path}: {info.duration_s / 60:.1f} min long; the limit is "
            f"{config.max_duration_s / 60:.0f} min (AudioConfig.max_duration_s)",
            duration_s=info.duration_s,
        )
