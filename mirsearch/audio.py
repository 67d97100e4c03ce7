"""Decode any audio FFmpeg reads (via PyAV) to mono float32 at one rate, checked usable.

What its container declares is containers.py; finding the files, files.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from mirsearch import levels
from mirsearch.config import AudioConfig
from mirsearch.containers import (
    WAV_PROBE_BYTES,
    AudioInfo,
    open_container,
    probe,
    reason,
)
from mirsearch.errors import AudioError, EmptyAudioError, SilentAudioError, TooLongError
from mirsearch.headers import missing_bytes, ogg_streams_in_turn, states_duration

log = logging.getLogger(__name__)

MAX_BAD_PACKETS = 20  # more unreadable packets than this and the file is corrupt
TRUNCATION_TOLERANCE = 0.9  # decoding less than this share of the declared duration is truncation
MAX_PEAK = 1e4  # samples past this multiple of full scale (80 dB over it) are a damaged file
MAX_MIXED_CHANNELS = 8  # more channels than this are averaged to mono (`_converted`)
MAX_STREAMS = 4  # audio streams of one file read at most (a video's dubs and commentary)
# `played_at` hands FFmpeg's resampler this many samples a frame (16 s at 16 kHz): the samples
# it gives are the same, bit for bit, as for the whole signal in one frame, where that had taken
# 1.3 GB more at the peak for a 29 min upload and 3-4 times as long
RESAMPLE_BLOCK = 1 << 18


@dataclass(frozen=True)
class Decoded:
    samples: np.ndarray  # float32, mono, shape (n,)
    sample_rate: int
    info: AudioInfo


def _read(
    path: Path, info: AudioInfo, config: AudioConfig, *, first_channel: bool = False
) -> Iterator[np.ndarray]:
    """The file's audio stream `info.stream` read, decoded and converted inside FFmpeg (`amovie`
    into `_converted`): mono float32 a second at a time, no Python per packet or frame.

    A third less CPU than reading packet by packet in Python into the same conversion (../shared/
    audio: 20.0 → 14.4 CPU-s, the same samples); but FFmpeg stops at the first packet it cannot
    decode or a change of format midway (FFmpegError), where `_read_packets` goes on. A WAV
    file (as `open_container` found it) is opened on WAV_PROBE_BYTES here too.
    """
    graph = av.filter.Graph()
    probing = {"format_opts": f"probesize={WAV_PROBE_BYTES}"} if info.format == "wav" else {}
    movie = graph.add("amovie", filename=str(path), streams=f"a:{info.stream}", **probing)
    sink = _converted(graph, movie, config, channels=info.channels, first_channel=first_channel)
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
    stream = container.streams.audio[info.stream]
    graph = sink = shape = None
    bad_packets = queued = 0
    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError as exc:
                bad_packets += 1
                if bad_packets > MAX_BAD_PACKETS:
                    raise AudioError(f"{info.path}: the audio is corrupt ({reason(exc)})") from exc
                continue
            for frame in frames:
                if graph is not None and _shape(frame) != shape:  # the stream changed format
                    yield from drained(graph, sink, flush=True)
                    graph = None
                if graph is None:
                    shape = _shape(frame)
                    graph, sink = conversion_for(frame, config, first_channel=first_channel)
                frame.pts = None  # skipped packets leave gaps in the timestamps
                graph.push(frame)
                queued += frame.samples
                if queued >= frame.sample_rate:  # pulled a second at a time: a pull that
                    queued = 0  # finds nothing raises, which costs more than decoding
                    yield from drained(graph, sink)
        if graph is not None:
            yield from drained(graph, sink, flush=True)
    except av.error.FFmpegError as exc:
        raise AudioError(f"{info.path}: the audio is corrupt or truncated ({reason(exc)})") from exc
    if bad_packets:
        log.info("%s: skipped %d unreadable packets", info.path, bad_packets)


def _shape(frame: av.AudioFrame) -> tuple[int, str, str]:
    return frame.sample_rate, frame.format.name, frame.layout.name


def conversion_for(
    frame: av.AudioFrame, config: AudioConfig, *, first_channel: bool = False
) -> tuple[av.filter.Graph, av.filter.context.FilterContext]:
    """The one conversion (`_converted`) for frames shaped as `frame`, pushed into the graph it
    returns with `graph.push` and pulled from its sink (`drained`)."""
    graph = av.filter.Graph()
    source = graph.add(
        "abuffer",
        sample_rate=str(frame.sample_rate),
        sample_fmt=frame.format.name,
        channel_layout=frame.layout.name,
        time_base=f"1/{frame.sample_rate}",
    )
    channels = frame.layout.nb_channels
    return graph, _converted(graph, source, config, channels=channels, first_channel=first_channel)


def drained(graph, sink, *, flush: bool = False) -> Iterator[np.ndarray]:
    """What the conversion holds (all of it with `flush`: the end of the input pushed first)."""
    if flush:
        graph.push(None)
    while True:
        try:
            yield sink.pull().to_ndarray().reshape(-1)
        except (av.error.BlockingIOError, av.error.EOFError):
            return


def _converted(
    graph: av.filter.Graph,
    source,
    config: AudioConfig,
    *,
    channels: int,
    first_channel: bool = False,
):
    """The one conversion, from `source` into the sink it returns (configured): the channels
    mixed to mono (or the first alone, `first_channel`: for channels that cancel in the mix)
    at the file's rate, then the rate changed (libswresample's default 32-tap filter), float32
    frames of one second out.

    Two steps: one doing both gave the same samples (to 4e-7) in twice its own time (6 min of
    48 kHz stereo Opus: 0.32 → 0.17 s). 16 taps saved 0.5 of 9 CPU-s decoding ../shared/audio and
    kept `make eval-dupes` recall (99.35 %), but took 2 dB off 7 kHz and let 8.6 kHz fold back at
    -15 dB: "sounds alike" precision@5 fell from 0.460 to 0.447 (bench/eval_retrieval.py).

    Past MAX_MIXED_CHANNELS `channels` are averaged (`pan`): FFmpeg mixes by the channels'
    layout, and has none for most counts past 8 (9 channels, a second-order Ambisonics file, or
    32 had been refused as "corrupt or truncated").
    """
    mixed = graph.add("aformat", sample_fmts="fltp", channel_layouts="mono")
    rate = str(config.sample_rate)
    resampled = graph.add("aformat", sample_fmts="flt", channel_layouts="mono", sample_rates=rate)
    sink = graph.add("abuffersink")
    if first_channel or channels > MAX_MIXED_CHANNELS:
        taken = "c0" if first_channel else "+".join(f"c{i}" for i in range(channels))
        panned = graph.add("pan", f"mono|c0<{taken}")  # "<": the gains renormalised to sum to 1
        source.link_to(panned)
        panned.link_to(mixed)
    else:
        source.link_to(mixed)
    mixed.link_to(resampled)
    resampled.link_to(sink)
    graph.configure()
    graph.set_audio_frame_size(config.sample_rate)
    return sink


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


def load(path: Path, *, config: AudioConfig = AudioConfig(), stream: int | None = None) -> Decoded:
    """Decode `path` whole to mono float32 at `config.sample_rate`, checking it is usable audio:
    its audio stream number `stream` (from 0) or by default the one FFmpeg would choose or,
    where that is silent, the first other that is not."""
    path = Path(path)
    info = probe(path, config=config, stream=stream)
    missing = missing_bytes(path, info.format)
    if missing:
        cut = "its last page" if info.format == "ogg" else "its audio"  # not the bytes cut off
        raise AudioError(f"{path}: the file is truncated: {cut} lacks {missing:,} bytes")
    if info.format == "ogg" and (streams := ogg_streams_in_turn(path)) > 1:
        raise AudioError(
            f"{path}: a chained Ogg file ({streams} streams one after another), of which FFmpeg "
            "reads only the first: split it into a file per stream"
        )
    samples, level_dbfs = _checked(path, info, config)
    if level_dbfs < config.silence_dbfs and info.streams > 1 and stream is None:
        info, samples, level_dbfs = _sounding_other(path, info, config, samples, level_dbfs)
    if info.streams > 1 and stream is None:
        log.info(
            "%s: holds %d audio streams: stream %d (a:%d) is the one read",
            path,
            info.streams,
            info.stream + 1,
            info.stream,
        )
    if level_dbfs < config.silence_dbfs:
        raise SilentAudioError(
            f"{path}: the audio is silent (level below {config.silence_dbfs:.0f} dBFS, "
            "an offset or sub-audible drift aside)"
        )
    exact = AudioInfo(**{**info.__dict__, "duration_s": samples.size / config.sample_rate})
    return Decoded(
        samples=samples.astype(np.float32, copy=False), sample_rate=config.sample_rate, info=exact
    )


def _checked(path: Path, info: AudioInfo, config: AudioConfig) -> tuple[np.ndarray, float]:
    """The samples of `info`'s stream (`_decoded`) and their level in dBFS, refused when they
    are none, cut short of what it declares, or not numbers; where the mono mix is silent but
    the first channel is not (channels that cancel), the first channel's."""
    samples = _decoded(path, info, config)
    decoded_s = samples.size / config.sample_rate
    if samples.size == 0:
        raise EmptyAudioError(f"{path}: the file decodes to no audio at all")
    if (
        info.duration_s > 1.0
        and decoded_s < TRUNCATION_TOLERANCE * info.duration_s
        and states_duration(path, info.format)
    ):
        raise AudioError(
            f"{path}: the file is truncated: decoded {decoded_s:.1f} s of the "
            f"{info.duration_s:.1f} s it declares"
        )
    peak = max(float(samples.max()), -float(samples.min()))  # no copy of a long file's
    if not np.isfinite(peak):
        raise AudioError(f"{path}: the file is corrupt: it decodes to samples that are not numbers")
    if peak > MAX_PEAK:  # float samples ~1e29 had overflowed the level: "not numbers", warnings
        raise AudioError(
            f"{path}: the file is corrupt: it decodes to samples {peak:.0e} x full scale"
        )
    level_dbfs = levels.level_dbfs(samples, sample_rate=config.sample_rate)
    if level_dbfs < config.silence_dbfs and info.channels > 1:
        first = _decoded(path, info, config, first_channel=True)
        first_dbfs = levels.level_dbfs(first, sample_rate=config.sample_rate)
        if first_dbfs >= config.silence_dbfs:
            log.info("%s: its channels cancel in the mono mix: read from its first", path)
            return first, first_dbfs
    return samples, level_dbfs


def _sounding_other(
    path: Path, info: AudioInfo, config: AudioConfig, samples: np.ndarray, level_dbfs: float
) -> tuple[AudioInfo, np.ndarray, float]:
    """The first of the file's other audio streams that is not silent, with its samples and
    level; else `info`'s own, given. A silent track first had made a video whose next track
    holds music "silent", a way round a copyright check. The first MAX_STREAMS streams only."""
    for position in range(min(info.streams, MAX_STREAMS)):  # a file of 600 silent streams
        if position == info.stream:  # had been read for 44 s, each probed anew
            continue
        try:
            other = probe(path, config=config, stream=position)
            other_samples, other_dbfs = _checked(path, other, config)
        except AudioError as exc:
            log.info("%s: audio stream %d left unread: %s", path, position + 1, exc)
            continue
        if other_dbfs >= config.silence_dbfs:
            log.info(
                "%s: audio stream %d, FFmpeg's choice, is silent: stream %d read instead",
                path,
                info.stream + 1,
                position + 1,
            )
            return other, other_samples, other_dbfs
    return info, samples, level_dbfs


def _decoded(
    path: Path, info: AudioInfo, config: AudioConfig, *, first_channel: bool = False
) -> np.ndarray:
    """The samples of `path` (see `_read`, `_read_packets` where FFmpeg stops), its channels
    mixed to mono or, with `first_channel`, its first channel alone."""
    try:
        reading = _read(path, info, config, first_channel=first_channel)
        return _gathered(reading, info, config)
    except av.error.FFmpegError:
        with open_container(path) as container:
            reading = _read_packets(container, info, config, first_channel=first_channel)
            return _gathered(reading, info, config)


def played_at(samples: np.ndarray, speed: float, *, sample_rate: int) -> tuple[np.ndarray, float]:
    """Mono float32 `samples` at `sample_rate` played `speed` times as fast, as a turntable or a
    tape plays them (tempo and pitch move together: FFmpeg's resampler reads them at
    `speed` · `sample_rate`), and the speed exactly taken, that rate being a whole number of hertz.
    """
    source_rate = max(1, round(sample_rate * speed))
    x = np.ascontiguousarray(samples, dtype=np.float32)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    blocks = []
    for start in range(0, x.size, RESAMPLE_BLOCK):
        frame = av.AudioFrame.from_ndarray(
            x[None, start : start + RESAMPLE_BLOCK], format="flt", layout="mono"
        )
        frame.sample_rate = source_rate
        blocks += [f.to_ndarray()[0] for f in resampler.resample(frame)]
    blocks += [f.to_ndarray()[0] for f in resampler.resample(None)]
    played = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    return played, source_rate / sample_rate
