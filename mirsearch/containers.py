"""What an audio file's container declares (AudioInfo: format, codec, rate, duration, tags) of
the audio stream read: the one FFmpeg would choose, or another named.

It is read without decoding, and a file that is not audio, or longer than
AudioConfig.max_duration_s, is refused there.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import av

from mirsearch import headers
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
# characters of a tag kept (as track_filters.MAX_TEXT, the longest genre a filter takes): a genre of
# 5,000 was listed and could not be asked for, and a 2 MB title went out with every result
TAG_CHARS = 1_000


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
        if headers.mp4_without_index(path):
            raise AudioError(
                f"{path}: the file is truncated: an MP4 whose index (its moov box) is missing, "
                "as an upload or download cut short before its end leaves it"
            ) from exc
        raise NotAudioError(f"{path}: not an audio file FFmpeg can read ({reason(exc)})") from exc
    if not container.streams.audio:
        container.close()
        raise NotAudioError(f"{path}: the file holds no audio stream")
    return container


def chosen_stream(container: av.container.InputContainer) -> int:
    """Which of the container's audio streams FFmpeg would choose (av_find_best_stream, as its
    players do: the one marked default first), counted among its audio streams. The first had
    been read, whatever was marked: a commentary track put first hid the music after it."""
    best = container.streams.best("audio")
    return container.streams.audio.index(best) if best is not None else 0


def reason(exc: Exception) -> str:
    """What an FFmpeg or OS error says, for a message."""
    return getattr(exc, "strerror", None) or str(exc)


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
