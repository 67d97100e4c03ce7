"""Decode any audio FFmpeg reads (via PyAV) to mono float32 at one rate; tags; input validation."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from mirsearch.config import AudioConfig
from mirsearch.errors import (
    AudioError,
    EmptyAudioError,
    NotAudioError,
    SilentAudioError,
    TooLongError,
)

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = frozenset(  # what the catalog walker and the dataset readers try
    [
        ".wav",
        ".wave",
        ".flac",
        ".mp3",
        ".ogg",
        ".oga",
        ".opus",
        ".m4a",
        ".mp4",
        ".aac",
        ".wma",
        ".aif",
        ".aiff",
        ".ape",
        ".wv",
        ".mka",
        ".webm",
        ".au",
    ]
)
TAG_KEYS = ("title", "artist", "album", "genre")
MAX_BAD_PACKETS = 20  # more unreadable packets than this and the file is corrupt
TRUNCATION_TOLERANCE = 0.9  # decoding less than this share of the declared duration is truncation
MAGIC = (  # (offset, bytes) of the containers we sniff for
    (0, b"RIFF"),
    (0, b"fLaC"),
    (0, b"OggS"),
    (0, b"ID3"),
    (4, b"ftyp"),
    (0, b"FORM"),
    (0, b"\x1a\x45\xdf\xa3"),
    (0, b"MAC "),
    (0, b"wvpk"),
    (0, b"\x30\x26\xb2\x75"),
    (0, b".snd"),
)


@dataclass(frozen=True)
class AudioInfo:
    """What the container says about a file, before decoding."""

    path: str
    format: str  # FFmpeg's container name, e.g. "ogg", "mp3", "mov,mp4,m4a,3gp,3g2,mj2"
    codec: str  # e.g. "vorbis", "mp3float", "aac"
    sample_rate: int  # of the file, not of the decoded signal
    channels: int
    duration_s: float  # as declared by the container; exact after `load`
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Decoded:
    samples: np.ndarray  # float32, mono, shape (n,)
    sample_rate: int
    info: AudioInfo


def looks_like_audio(path: Path) -> bool:
    """True when the first bytes look like a media container or an MPEG audio frame.

    The walker uses it for files without an audio extension; files with one are always tried,
    so a text file named .mp3 is recorded as failed rather than silently skipped.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return False
    if any(head[offset : offset + len(magic)] == magic for offset, magic in MAGIC):
        return True
    return len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0  # MPEG frame sync


def discover(paths: Iterable[Path]) -> list[Path]:
    """Every audio file under `paths`: by extension, or by content for files with other names."""
    found: set[Path] = set()
    for root in paths:
        root = Path(root)
        if not root.exists():
            raise AudioError(f"{root}: no such file or folder")
        candidates = [root] if root.is_file() else _walk(root)
        for path in candidates:
            if path.suffix.lower() in AUDIO_EXTENSIONS or looks_like_audio(path):
                found.add(path.resolve())
    return sorted(found)


def _walk(root: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(folder) / name


def _open(path: Path) -> av.container.InputContainer:
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise EmptyAudioError(f"{path}: the file is empty (0 bytes)")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise NotAudioError(f"{path}: not an audio file FFmpeg can read ({_reason(exc)})") from exc
    if not container.streams.audio:
        container.close()
        raise NotAudioError(f"{path}: the file holds no audio stream")
    return container


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc)


def _info(path: Path, container: av.container.InputContainer) -> AudioInfo:
    stream = container.streams.audio[0]
    if container.duration is not None:
        duration_s = container.duration / av.time_base
    elif stream.duration is not None and stream.time_base is not None:
        duration_s = float(stream.duration * stream.time_base)
    else:
        duration_s = 0.0
    tags = {}
    for source in (stream.metadata, container.metadata):
        for key, value in source.items():
            key = key.lower()
            if key in TAG_KEYS and value and key not in tags:
                tags[key] = str(value).strip()
    return AudioInfo(
        path=str(path),
        format=container.format.name,
        codec=stream.codec_context.name,
        sample_rate=stream.codec_context.sample_rate or 0,
        channels=stream.codec_context.channels or 0,
        duration_s=max(0.0, duration_s),
        tags=tags,
    )


def probe(path: Path, *, config: AudioConfig = AudioConfig()) -> AudioInfo:
    """The container's description of `path`; refuses non-audio and over-long files undecoded."""
    path = Path(path)
    with _open(path) as container:
        info = _info(path, container)
    _check_declared_length(info, config)
    return info


def _check_declared_length(info: AudioInfo, config: AudioConfig) -> None:
    if info.duration_s > config.max_duration_s:
        raise TooLongError(
            f"{info.path}: {info.duration_s / 60:.1f} min long; the limit is "
            f"{config.max_duration_s / 60:.0f} min (AudioConfig.max_duration_s)"
        )


def iter_blocks(path: Path, *, config: AudioConfig = AudioConfig()) -> Iterator[np.ndarray]:
    """Mono float32 blocks at `config.sample_rate`, decoded and resampled as the file streams."""
    path = Path(path)
    with _open(path) as container:
        info = _info(path, container)
        _check_declared_length(info, config)
        yield from _decode(container, info, config)


def _decode(container, info: AudioInfo, config: AudioConfig) -> Iterator[np.ndarray]:
    """Demux and decode packet by packet; a few unreadable packets are skipped, not fatal.

    Decoded frames (a Vorbis frame is ~10 ms) are gathered in an FFmpeg FIFO and resampled a
    second at a time: one resampler call per second instead of one per frame, which took more
    time than decoding itself (same samples out).
    """
    stream = container.streams.audio[0]
    converter = _Converter(config.sample_rate)
    max_samples = int(config.max_duration_s * config.sample_rate)
    block_samples = int(config.block_s * config.sample_rate)
    pending: list[np.ndarray] = []
    pending_n = total = bad_packets = 0
    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError as exc:
                bad_packets += 1
                if bad_packets > MAX_BAD_PACKETS:
                    raise AudioError(f"{info.path}: the audio is corrupt ({_reason(exc)})") from exc
                continue
            for frame in frames:
                for chunk in converter.push(frame):
                    pending.append(chunk)
                    pending_n += chunk.size
                    total += chunk.size
            if total > max_samples:
                raise TooLongError(
                    f"{info.path}: longer than the limit of {config.max_duration_s / 60:.0f} min "
                    "(AudioConfig.max_duration_s)"
                )
            if pending_n >= block_samples:
                yield np.concatenate(pending)
                pending, pending_n = [], 0
        pending.extend(converter.flush())
    except av.error.FFmpegError as exc:
        raise AudioError(
            f"{info.path}: the audio is corrupt or truncated ({_reason(exc)})"
        ) from exc
    if bad_packets:
        log.info("%s: skipped %d unreadable packets", info.path, bad_packets)
    if pending:
        yield np.concatenate(pending)


class _Converter:
    """Decoded frames → mono float32 at `rate`, resampled about a second of input at a time.

    Two steps: the channels mixed to mono at the file's rate, then the rate changed. One
    libswresample call doing both gave the same samples (to 4e-7) in twice its own time (6 min
    of 48 kHz stereo Opus: 0.32 → 0.17 s), ~5 % of decoding ../shared/audio (18.4 → 17.5 CPU-s,
    the best of three runs of each file, interleaved).
    """

    def __init__(self, rate: int):
        self.rate = rate
        self.fifo: av.AudioFifo | None = None
        self.steps: list[av.AudioResampler] = []

    def push(self, frame: av.AudioFrame) -> list[np.ndarray]:
        frame.pts = None  # the FIFO checks timestamps are contiguous; skipped packets aren't
        out = []
        if self.fifo is not None:
            try:
                self.fifo.write(frame)
            except ValueError:  # the FIFO takes only frames like its first: the stream changed
                out = self.flush()  # format, so finish the old and start afresh
        if self.fifo is None:
            self.fifo = av.AudioFifo()
            # libswresample's default filter (32 taps). 16 taps saved 0.5 of 9 CPU-s decoding
            # ../shared/audio and kept `make eval-dupes` recall (99.35 %), but took 2 dB off
            # 7 kHz and let 8.6 kHz fold back at -15 dB: "sounds alike" precision@5 fell from
            # 0.460 to 0.447 (bench/eval_retrieval.py), so it was not taken.
            self.steps = [
                av.AudioResampler(format="fltp", layout="mono", rate=frame.sample_rate),
                av.AudioResampler(format="flt", layout="mono", rate=self.rate),
            ]
            self.fifo.write(frame)
        if self.fifo.samples >= frame.sample_rate:
            out += self._resample(self.fifo.read())
        return out

    def flush(self) -> list[np.ndarray]:
        if self.fifo is None:
            return []
        out = self._resample(self.fifo.read()) if self.fifo.samples else []
        out += self._resample(None)
        self.fifo, self.steps = None, []
        return out

    def _resample(self, frame: av.AudioFrame | None) -> list[np.ndarray]:
        mixer, resampler = self.steps
        mixed = mixer.resample(frame)
        if frame is None:
            mixed.append(None)  # the flush goes on through the second step
        outs = [out for f in mixed for out in resampler.resample(f)]
        return [out.to_ndarray().reshape(-1) for out in outs]


def _wav_missing_bytes(path: Path) -> int:
    """For a RIFF/WAVE file, how many bytes of the declared data chunk are not in the file."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return 0
    at = head.find(b"data", 12)
    if at < 0:
        return 0
    declared = int.from_bytes(head[at + 4 : at + 8], "little")
    if declared in (0, 0xFFFFFFFF):  # streamed WAVs leave the size open
        return 0
    return max(0, at + 8 + declared - path.stat().st_size)


def _gathered(blocks: Iterator[np.ndarray], info: AudioInfo, config: AudioConfig) -> np.ndarray:
    """The decoded blocks in one float32 array, each copied in as it comes into room for the
    declared duration (grown by half when that was short; room never written to is never
    resident), rather than kept in a list and concatenated at the end: twice the samples'
    memory at the peak (an hour: 0.46 GB)."""
    out = np.empty(int((info.duration_s + 1.0) * config.sample_rate), dtype=np.float32)
    n = 0
    for block in blocks:
        if n + block.size > out.size:
            grown = np.empty(max(n + block.size, out.size * 3 // 2), dtype=np.float32)
            grown[:n] = out[:n]
            out = grown
        out[n : n + block.size] = block
        n += block.size
    return out[:n]


def load(path: Path, *, config: AudioConfig = AudioConfig()) -> Decoded:
    """Decode `path` whole to mono float32 at `config.sample_rate`, checking it is usable audio."""
    path = Path(path)
    with _open(path) as container:
        info = _info(path, container)
        _check_declared_length(info, config)
        missing = _wav_missing_bytes(path) if info.format == "wav" else 0
        if missing:
            raise AudioError(f"{path}: the file is truncated: {missing} bytes of audio are missing")
        samples = _gathered(_decode(container, info, config), info, config)
    decoded_s = samples.size / config.sample_rate
    if samples.size == 0:
        raise EmptyAudioError(f"{path}: the file decodes to no audio at all")
    if info.duration_s > 1.0 and decoded_s < TRUNCATION_TOLERANCE * info.duration_s:
        raise AudioError(
            f"{path}: the file is truncated: decoded {decoded_s:.1f} s of the "
            f"{info.duration_s:.1f} s it declares"
        )
    rms = float(np.sqrt(np.dot(samples, samples) / samples.size))  # BLAS: 15× a float64 copy
    if 20 * np.log10(rms + 1e-12) < config.silence_dbfs:
        raise SilentAudioError(
            f"{path}: the audio is silent (level below {config.silence_dbfs:.0f} dBFS)"
        )
    exact = AudioInfo(**{**info.__dict__, "duration_s": decoded_s})
    return Decoded(
        samples=samples.astype(np.float32, copy=False), sample_rate=config.sample_rate, info=exact
    )


CODECS = {  # extension: (encoder, sample format, layout); .ogg holds Opus: FFmpeg's own Vorbis
    # encoder is experimental and aborts on some input, and the wheel has no libvorbis
    ".wav": ("pcm_s16le", "s16", "mono"),
    ".flac": ("flac", "s16", "mono"),
    ".mp3": ("libmp3lame", "fltp", "mono"),
    ".ogg": ("libopus", "flt", "mono"),
    ".opus": ("libopus", "flt", "mono"),
    ".m4a": ("aac", "fltp", "mono"),
}


def write(
    path: Path,
    samples: np.ndarray,
    sample_rate: int,
    *,
    bit_rate: int | None = None,
    tags: dict[str, str] | None = None,
) -> Path:
    """Write mono float32 `samples` to `path`; the codec follows the extension (see CODECS)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CODECS:
        raise AudioError(f"{path}: cannot write {suffix!r} files; known: {', '.join(CODECS)}")
    codec, sample_format, layout = CODECS[suffix]
    rate = 48_000 if codec == "libopus" else sample_rate
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        if bit_rate:
            stream.bit_rate = bit_rate
        for key, value in (tags or {}).items():
            container.metadata[key] = value
        resampler = av.AudioResampler(format=sample_format, layout=layout, rate=rate)
        clipped = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
        step = sample_rate  # one second a frame keeps memory flat
        for start in range(0, clipped.size, step):
            frame = av.AudioFrame.from_ndarray(
                clipped[None, start : start + step], format="flt", layout="mono"
            )
            frame.sample_rate = sample_rate
            for out in resampler.resample(frame):
                container.mux(stream.encode(out))
        for out in resampler.resample(None):
            container.mux(stream.encode(out))
        container.mux(stream.encode(None))
    return path
