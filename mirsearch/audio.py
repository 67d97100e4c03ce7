"""Decode any audio FFmpeg reads (via PyAV) to mono float32 at one rate; tags; input validation
(finding the files is files.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
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
from mirsearch.files import storable

log = logging.getLogger(__name__)

TAG_KEYS = ("title", "artist", "album", "genre")
MAX_BAD_PACKETS = 20  # more unreadable packets than this and the file is corrupt
TRUNCATION_TOLERANCE = 0.9  # decoding less than this share of the declared duration is truncation
# The silence check measures what is left once each block of this length loses its straight-line
# trend: a DC offset and drift below ~10 Hz (-30 dB and more; 50 Hz passes) are no sound, and an
# upload of nothing else had been matched to a catalog track.
LEVEL_BLOCK_S = 0.02
# How much of a WAV file FFmpeg reads when it opens one. By default (5 MB) its check that 16-bit
# PCM is not another codec behind a PCM header reads every packet up to 32 and tries its probes
# on them: in a 10 s clip at 16 kHz, 4.5 of the 16 ms its decoding took, paid by both opens.
# 4 KB still finds MP3 frames behind a PCM header (tests/test_audio.py).
WAV_PROBE_BYTES = 4096


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


def _open(path: Path) -> av.container.InputContainer:
    if not path.is_file():
        raise AudioError(f"{path}: {'not a regular file' if path.exists() else 'no such file'}")
    if not storable(path):
        raise AudioError(f"{path!r}: the file's name is not UTF-8, which FFmpeg needs: rename it")
    if path.stat().st_size == 0:
        raise EmptyAudioError(f"{path}: the file is empty (0 bytes)")
    options = {"probesize": str(WAV_PROBE_BYTES)} if _is_wav(path) else {}
    try:
        container = av.open(str(path), metadata_errors="ignore", options=options)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise NotAudioError(f"{path}: not an audio file FFmpeg can read ({_reason(exc)})") from exc
    if not container.streams.audio:
        container.close()
        raise NotAudioError(f"{path}: the file holds no audio stream")
    return container


def _is_wav(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(12)
    return head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE"


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


def _read(
    path: Path, config: AudioConfig, *, wav: bool, first_channel: bool = False
) -> Iterator[np.ndarray]:
    """The file's first audio stream read, decoded and converted inside FFmpeg (`amovie` into
    `_converted`): mono float32 a second at a time, no Python per packet or frame.

    A third less CPU than reading packet by packet in Python into the same conversion (../shared/
    audio: 20.0 → 14.4 CPU-s, the same samples); but FFmpeg stops at the first packet it cannot
    decode or a change of format midway (FFmpegError), where `_read_packets` goes on. A `wav`
    file (its container as `_open` read it) is opened on WAV_PROBE_BYTES, as `_open` opened it.
    """
    graph = av.filter.Graph()
    probe = {"format_opts": f"probesize={WAV_PROBE_BYTES}"} if wav else {}
    movie = graph.add("amovie", filename=str(path), streams="a:0", **probe)
    sink = _converted(graph, movie, config, first_channel=first_channel)
    while True:
        try:
            yield sink.pull().to_ndarray().reshape(-1)
        except av.error.EOFError:
            return


def _read_packets(
    container, info: AudioInfo, config: AudioConfig, *, first_channel: bool = False
) -> Iterator[np.ndarray]:
    """`_read` packet by packet in Python, for a file FFmpeg stops on: a few unreadable packets
    are skipped, not fatal, and a change of format midway (concatenated files) starts the
    conversion afresh."""
    stream = container.streams.audio[0]
    graph = sink = shape = None
    bad_packets = queued = 0
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
                if graph is not None and _shape(frame) != shape:  # the stream changed format
                    yield from _drained(graph, sink, flush=True)
                    graph = None
                if graph is None:
                    graph, shape = av.filter.Graph(), _shape(frame)
                    source = graph.add(
                        "abuffer",
                        sample_rate=str(frame.sample_rate),
                        sample_fmt=frame.format.name,
                        channel_layout=frame.layout.name,
                        time_base=f"1/{frame.sample_rate}",
                    )
                    sink = _converted(graph, source, config, first_channel=first_channel)
                frame.pts = None  # skipped packets leave gaps in the timestamps
                graph.push(frame)
                queued += frame.samples
                if queued >= frame.sample_rate:  # pulled a second at a time: a pull that
                    queued = 0  # finds nothing raises, which costs more than decoding
                    yield from _drained(graph, sink)
        if graph is not None:
            yield from _drained(graph, sink, flush=True)
    except av.error.FFmpegError as exc:
        raise AudioError(
            f"{info.path}: the audio is corrupt or truncated ({_reason(exc)})"
        ) from exc
    if bad_packets:
        log.info("%s: skipped %d unreadable packets", info.path, bad_packets)


def _shape(frame: av.AudioFrame) -> tuple[int, str, str]:
    return frame.sample_rate, frame.format.name, frame.layout.name


def _drained(graph, sink, *, flush: bool = False) -> Iterator[np.ndarray]:
    """What the conversion holds (all of it with `flush`: the end of the input pushed first)."""
    if flush:
        graph.push(None)
    while True:
        try:
            yield sink.pull().to_ndarray().reshape(-1)
        except (av.error.BlockingIOError, av.error.EOFError):
            return


def _converted(graph: av.filter.Graph, source, config: AudioConfig, *, first_channel: bool = False):
    """The one conversion, from `source` into the sink it returns (configured): the channels
    mixed to mono (or the first alone, `first_channel`: for channels that cancel in the mix)
    at the file's rate, then the rate changed (libswresample's default 32-tap filter), float32
    frames of one second out.

    Two steps: one doing both gave the same samples (to 4e-7) in twice its own time (6 min of
    48 kHz stereo Opus: 0.32 → 0.17 s). 16 taps saved 0.5 of 9 CPU-s decoding ../shared/audio and
    kept `make eval-dupes` recall (99.35 %), but took 2 dB off 7 kHz and let 8.6 kHz fold back at
    -15 dB: "sounds alike" precision@5 fell from 0.460 to 0.447 (bench/eval_retrieval.py).
    """
    mixed = graph.add("aformat", sample_fmts="fltp", channel_layouts="mono")
    rate = str(config.sample_rate)
    resampled = graph.add("aformat", sample_fmts="flt", channel_layouts="mono", sample_rates=rate)
    sink = graph.add("abuffersink")
    if first_channel:
        alone = graph.add("pan", "mono|c0=c0")
        source.link_to(alone)
        alone.link_to(mixed)
    else:
        source.link_to(mixed)
    mixed.link_to(resampled)
    resampled.link_to(sink)
    graph.configure()
    graph.set_audio_frame_size(config.sample_rate)
    return sink


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
    memory at the peak (an hour: 0.46 GB). A file that decodes longer than
    AudioConfig.max_duration_s, whatever it declared, is refused as soon as it does."""
    out = np.empty(int((info.duration_s + 1.0) * config.sample_rate), dtype=np.float32)
    n, limit = 0, config.max_duration_s * config.sample_rate
    for block in blocks:
        if n + block.size > limit:
            raise TooLongError(
                f"{info.path}: longer than the limit of {config.max_duration_s / 60:.0f} min "
                "(AudioConfig.max_duration_s)"
            )
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
    samples = _decoded(path, info, config)
    decoded_s = samples.size / config.sample_rate
    if samples.size == 0:
        raise EmptyAudioError(f"{path}: the file decodes to no audio at all")
    if info.duration_s > 1.0 and decoded_s < TRUNCATION_TOLERANCE * info.duration_s:
        raise AudioError(
            f"{path}: the file is truncated: decoded {decoded_s:.1f} s of the "
            f"{info.duration_s:.1f} s it declares"
        )
    level_dbfs = _level_dbfs(samples, config)
    if not np.isfinite(level_dbfs):
        raise AudioError(f"{path}: the file is corrupt: it decodes to samples that are not numbers")
    if level_dbfs < config.silence_dbfs and info.channels > 1:
        first = _decoded(path, info, config, first_channel=True)
        first_dbfs = _level_dbfs(first, config)
        if first_dbfs >= config.silence_dbfs:
            log.info("%s: its channels cancel in the mono mix: read from its first", path)
            samples, level_dbfs = first, first_dbfs
    if level_dbfs < config.silence_dbfs:
        raise SilentAudioError(
            f"{path}: the audio is silent (level below {config.silence_dbfs:.0f} dBFS, "
            "an offset or sub-audible drift aside)"
        )
    exact = AudioInfo(**{**info.__dict__, "duration_s": decoded_s})
    return Decoded(
        samples=samples.astype(np.float32, copy=False), sample_rate=config.sample_rate, info=exact
    )


def _decoded(
    path: Path, info: AudioInfo, config: AudioConfig, *, first_channel: bool = False
) -> np.ndarray:
    """The samples of `path` (see `_read`, `_read_packets` where FFmpeg stops), its channels
    mixed to mono or, with `first_channel`, its first channel alone."""
    try:
        reading = _read(path, config, wav=info.format == "wav", first_channel=first_channel)
        return _gathered(reading, info, config)
    except av.error.FFmpegError:
        with _open(path) as container:
            reading = _read_packets(container, info, config, first_channel=first_channel)
            return _gathered(reading, info, config)


def _level_dbfs(samples: np.ndarray, config: AudioConfig) -> float:
    """The level the silence check reads (`_detrended_power`), in dBFS; NaN for non-numbers."""
    power = _detrended_power(samples, max(2, int(LEVEL_BLOCK_S * config.sample_rate)))
    return 10 * np.log10(power + 1e-24) if np.isfinite(power) else float("nan")


def _detrended_power(samples: np.ndarray, block: int) -> float:
    """Mean power of `samples` once each `block` of them (the last, shorter one left out) loses
    its least-squares line; NaN where a sample is not finite.

    Per block, the residual energy is its energy less its sum squared over its length and its
    moment about the centre squared over the moments' norm: three reductions the blocks share
    (BLAS; no copy of the samples: an hour, ~0.09 s) and the cancellation within a block only.
    """
    block = min(block, samples.size)
    blocks = samples[: samples.size // block * block].reshape(-1, block)
    t = np.arange(block, dtype=np.float32) - (block - 1) / 2
    with np.errstate(invalid="ignore"):  # NaN or infinite samples: told by the result
        energy = np.einsum("ij,ij->i", blocks, blocks)
        trend = blocks.sum(axis=1) ** 2 / block + (blocks @ t) ** 2 / float(t @ t or 1.0)
        residual = np.maximum(energy - trend, 0.0)
    return float(residual.sum(dtype=np.float64) / blocks.size)
