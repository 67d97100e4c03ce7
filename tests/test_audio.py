"""Decoding: formats, rates, the real music's durations, and audio truncated, corrupt or silent."""

from __future__ import annotations

import logging
import struct
import tracemalloc

import av
import numpy as np
import pytest
from conftest import SR, noise, tone, write_video

from mirsearch import audio, containers
from mirsearch.config import AudioConfig
from mirsearch.encoding import write
from mirsearch.errors import AudioError, NotAudioError, SilentAudioError


def dominant_hz(samples: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(samples.size, 1 / sr)[spectrum.argmax()])


def test_a_stream_that_changes_sample_rate_midway_decodes_whole(tmp_path):
    """Two MP3 streams back to back (44.1 then 22.05 kHz), as concatenated files are: the
    decoder's frames change rate halfway, and both halves come out at 16 kHz."""
    first = write(tmp_path / "a.mp3", tone(440.0, 3.0, sr=44_100), 44_100)
    second = write(tmp_path / "b.mp3", tone(660.0, 3.0, sr=22_050), 22_050)
    joined = tmp_path / "joined.mp3"
    joined.write_bytes(first.read_bytes() + second.read_bytes())
    samples = audio.load(joined).samples
    assert samples.size / SR == pytest.approx(6.0, abs=0.25)
    assert dominant_hz(samples[SR // 2 : 2 * SR], SR) == pytest.approx(440.0, abs=2.0)
    assert dominant_hz(samples[-2 * SR : -SR // 2], SR) == pytest.approx(660.0, abs=2.0)


def test_resampling_keeps_the_bands_read_and_stops_what_would_fold_back(tmp_path):
    """44.1 kHz tones through the decoder's resampler to 16 kHz: 7 kHz (the top mel bands) passes,
    9.5 and 12 kHz, which would fold back to 6.5 and 4 kHz, are stopped. A 16-tap filter (-2 dB
    at 7 kHz, 9.5 kHz at -33 dB) cost "sounds alike" precision (audio._converted)."""
    sr, t = 44_100, np.arange(3 * 44_100) / 44_100
    x = sum(0.2 * np.sin(2 * np.pi * hz * t) for hz in (1_000, 7_000, 9_500, 12_000))
    y = audio.load(write(tmp_path / "tones.flac", x.astype(np.float32), sr)).samples
    segment = y[SR // 2 : SR // 2 + 2 * SR]
    spectrum = np.abs(np.fft.rfft(segment * np.hanning(segment.size)))
    freqs = np.fft.rfftfreq(segment.size, 1 / SR)

    def peak(hz: float) -> float:
        return spectrum[np.abs(freqs - hz) <= 20].max()

    def level_db(hz: float) -> float:  # relative to the 1 kHz tone
        return 20 * np.log10(peak(hz) / peak(1_000))

    assert level_db(7_000) > -1.0
    assert level_db(16_000 - 9_500) < -60.0
    assert level_db(16_000 - 12_000) < -60.0


@pytest.mark.parametrize("speed", [1.25, 0.8, 1 / 1.36])
def test_played_at_a_speed_moves_tempo_and_pitch_together(speed):
    """A turntable's change: 2 s of 440 Hz played 1.25 times as fast last 1.6 s at 550 Hz; the
    speed told is the one taken (the source rate a whole number of hertz)."""
    played, taken = audio.played_at(tone(440.0, 2.0), speed, sample_rate=SR)
    assert taken == pytest.approx(speed, abs=1 / SR)
    assert SR * taken == pytest.approx(round(SR * taken), abs=1e-6)
    assert played.dtype == np.float32 and played.size == pytest.approx(2 * SR / taken, abs=2)
    middle = played[played.size // 2 - 4096 : played.size // 2 + 4096] * np.hanning(8192)
    assert np.argmax(np.abs(np.fft.rfft(middle))) * SR / 8192 == pytest.approx(440 * taken, abs=3)


@pytest.mark.parametrize("speed", [1 / 1.36, 1 / 0.73])
def test_a_long_signal_is_played_at_a_speed_in_blocks_the_same_to_the_bit(speed):
    """A signal of several audio.RESAMPLE_BLOCKs is handed to FFmpeg's resampler a block at a
    time (a 29 min upload in one frame had taken 1.3 GB more at the peak): the samples are those
    of the whole signal resampled in one frame."""
    x = noise(2.6 * audio.RESAMPLE_BLOCK / SR, seed=4)
    played, taken = audio.played_at(x, speed, sample_rate=SR)
    frame = av.AudioFrame.from_ndarray(x[None], format="flt", layout="mono")
    frame.sample_rate = round(SR * taken)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SR)
    whole = [f.to_ndarray()[0] for f in [*resampler.resample(frame), *resampler.resample(None)]]
    assert np.array_equal(played, np.concatenate(whole))


@pytest.mark.parametrize("suffix", [".flac", ".mp3", ".wav", ".ogg", ".opus"])
def test_truncated_file_is_refused(write_audio, suffix):
    path = write_audio(f"long{suffix}", tone(440.0, 20.0))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match="truncated|corrupt"):
        audio.load(path)


@pytest.mark.parametrize(
    ("name", "audio_start_s"), [("longer.mp4", 0.0), ("longer.mkv", 0.0), ("late.mp4", 2.0)]
)
def test_a_video_running_on_past_its_sound_is_read_not_refused_as_truncated(
    tmp_path, name, audio_start_s
):
    """4 s of picture over 2 s of sound, or sound from 2 s in: the container lasts as long as
    its longest stream, and such a video had been refused as "truncated: decoded 2.0 s of the
    4.0 s it declares". The sound's own length is checked (MP4's, Matroska's DURATION tag)."""
    path = write_video(
        tmp_path / name, [tone(440.0, 2.0)], video_s=4.0, audio_start_s=audio_start_s
    )
    decoded = audio.load(path)
    assert containers.probe(path).duration_s == pytest.approx(2.0, abs=0.1)
    assert decoded.samples.size / SR == pytest.approx(2.0, abs=0.15)  # AAC priming: 64 ms
    assert dominant_hz(decoded.samples, SR) == pytest.approx(440.0, abs=2.0)


def test_a_video_cut_short_is_refused_as_truncated(tmp_path):
    path = write_video(
        tmp_path / "cut.mp4",
        [tone(440.0, 10.0)],
        video_s=10.0,
        options={"movflags": "faststart"},  # the index first: a cut leaves it whole
    )
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match="truncated: decoded"):
        audio.load(path)
    index_last = write_video(tmp_path / "index-last.mp4", [tone(440.0, 10.0)], video_s=10.0)
    data = index_last.read_bytes()
    index_last.write_bytes(data[: len(data) // 2])  # the moov box, written last, cut off
    with pytest.raises(AudioError, match="truncated: an MP4 whose index") as refused:
        audio.load(index_last)
    assert not isinstance(refused.value, NotAudioError)  # had been "not an audio file"


def test_garbage_after_a_valid_header_is_an_error(write_audio):
    path = write_audio("broken.flac", tone(440.0, 10.0))
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    data[200:] = rng.integers(0, 256, len(data) - 200, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    with pytest.raises(AudioError):
        audio.load(path)


def test_silence_is_refused(write_audio):
    path = write_audio("silent.wav", np.zeros(SR * 3, dtype=np.float32))
    with pytest.raises(SilentAudioError, match="silent"):
        audio.load(path)


def float_wav(path, samples: np.ndarray, sr: int):
    """`samples` ((n,) or (n, channels)) as a 32-bit float WAV, written here: whatever they
    hold, NaN included."""
    channels = 1 if np.ndim(samples) == 1 else np.shape(samples)[1]
    data = np.asarray(samples, dtype="<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, channels, sr, sr * 4 * channels, 4 * channels, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data"
    path.write_bytes(
        b"RIFF"
        + struct.pack("<I", len(body) + 4 + len(data))
        + body
        + struct.pack("<I", len(data))
        + data
    )
    return path


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_samples_that_are_not_numbers_are_refused_as_corrupt(tmp_path, bad):
    x = tone(440.0, 5.0, sr=44_100)
    x[::100] = bad
    with pytest.raises(AudioError, match="not numbers") as refused:
        audio.load(float_wav(tmp_path / "bad.wav", x, 44_100))
    assert not isinstance(refused.value, SilentAudioError)


def test_samples_far_past_full_scale_are_refused_as_corrupt_without_a_warning(tmp_path):
    """Float samples ~1e29 overflowed the level: "not numbers", and NumPy's RuntimeWarning on
    the command's and the server's output."""
    import warnings

    x = tone(440.0, 5.0, sr=44_100) * 1e29
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AudioError, match=r"samples \de\+28 x full scale"):
            audio.load(float_wav(tmp_path / "huge.wav", x, 44_100))


@pytest.mark.parametrize(
    ("name", "samples", "sr"),
    [
        ("an offset", np.full(5 * 44_100, 0.5), 44_100),
        ("drift", 0.5 + 0.4 * np.sin(2 * np.pi * 0.3 * np.arange(10 * 44_100) / 44_100), 44_100),
        ("noise at 1 Hz", np.random.default_rng(0).standard_normal(100), 1),
    ],
)
def test_an_offset_or_sub_audible_drift_alone_is_silent(tmp_path, name, samples, sr):
    """Loud by their RMS (-6 to 0 dBFS), no sound to the ear: an upload of noise sampled at 1 Hz
    had been matched to a catalog track at 0.78."""
    with pytest.raises(SilentAudioError, match="silent"):
        audio.load(float_wav(tmp_path / "x.wav", samples, sr))


def test_stereo_whose_channels_cancel_in_the_mix_is_read_from_its_first(tmp_path):
    """L = -R (a wiring fault, or a way to slip a copy past a checker that mixes to mono) mixes
    to nothing: it had been refused as silent. Stereo silence stays silence."""
    x = tone(440.0, 5.0, sr=44_100)
    decoded = audio.load(float_wav(tmp_path / "inverted.wav", np.stack([x, -x], axis=1), 44_100))
    assert np.sqrt(np.mean(decoded.samples**2)) == pytest.approx(np.sqrt(np.mean(x**2)), rel=0.05)
    assert dominant_hz(decoded.samples, SR) == pytest.approx(440.0, abs=2.0)
    with pytest.raises(SilentAudioError):
        audio.load(float_wav(tmp_path / "silent.wav", np.zeros((5 * SR, 2)), SR))


@pytest.mark.parametrize(("hz", "dbfs"), [(440.0, -50.0), (50.0, -40.0)])
def test_quiet_sound_above_the_drift_is_not_silent(tmp_path, hz, dbfs):
    x = 10 ** (dbfs / 20) * np.sqrt(2) * np.sin(2 * np.pi * hz * np.arange(5 * SR) / SR)
    decoded = audio.load(float_wav(tmp_path / "quiet.wav", 0.25 + x, SR))
    assert decoded.info.duration_s == pytest.approx(5.0)


def test_reading_in_ffmpeg_and_packet_by_packet_give_the_same_samples(write_audio):
    """`load` reads a file inside FFmpeg and goes packet by packet only where FFmpeg stops: both
    end in the one conversion, so a file reads the same either way."""
    sr, t = 44_100, np.arange(5 * 44_100) / 44_100
    x = 0.2 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 3_000 * t)
    path = write_audio("tones.flac", x.astype(np.float32), sr)
    config = AudioConfig()
    info = containers.probe(path)
    whole = np.concatenate(list(audio._read(path, info, config)))
    with containers.open_container(path) as container:
        by_packets = np.concatenate(list(audio._read_packets(container, info, config)))
    np.testing.assert_array_equal(whole, by_packets)
    assert whole.size == pytest.approx(5 * SR, abs=SR * 0.01)


def test_the_stream_marked_default_is_read_the_same_way_by_either_path(tmp_path):
    """Noise first, a tone second marked default (as a player would pick it): the first audio
    stream had been read, by FFmpeg (`streams="a:0"`) and packet by packet alike."""
    path = write_video(tmp_path / "two.mkv", [noise(3.0), tone(440.0, 3.0)], video_s=3.0, default=1)
    info = containers.probe(path)
    assert (info.stream, info.streams) == (1, 2)
    whole = np.concatenate(list(audio._read(path, info, AudioConfig())))
    with containers.open_container(path) as container:
        by_packets = np.concatenate(list(audio._read_packets(container, info, AudioConfig())))
    np.testing.assert_array_equal(whole, by_packets)
    assert dominant_hz(audio.load(path).samples, SR) == pytest.approx(440.0, abs=2.0)


def test_a_silent_stream_first_does_not_hide_the_music_of_the_next(tmp_path, caplog):
    """A video whose first (default) audio stream is silence and whose second holds music had
    been refused as silent: a way round a copyright check. The first stream that sounds is
    read, and the log says which of how many."""
    silence = np.zeros(3 * SR, dtype=np.float32)
    path = write_video(tmp_path / "two.mp4", [silence, tone(440.0, 3.0)], video_s=3.0)
    with caplog.at_level(logging.INFO, logger="mirsearch.audio"):
        decoded = audio.load(path)
    assert (decoded.info.stream, decoded.info.streams) == (1, 2)
    assert dominant_hz(decoded.samples, SR) == pytest.approx(440.0, abs=2.0)
    assert "holds 2 audio streams: stream 2 (a:1) is the one read" in caplog.text
    both_silent = write_video(tmp_path / "none.mp4", [silence, silence], video_s=3.0)
    with pytest.raises(SilentAudioError):
        audio.load(both_silent)


def test_a_file_of_many_silent_streams_is_read_a_few_streams_deep(tmp_path, monkeypatch):
    """Every other stream of a silent first one had been probed and read: 600 silent 4 s streams
    in 709 KB held a server worker 44 s (20 of 29 min: 24 s), and a file of ~2 MB would have
    outlasted its timeout. MAX_STREAMS of them are read, music past them unheard."""
    silence = np.zeros(SR, dtype=np.float32)
    path = write_video(tmp_path / "many.mkv", [silence] * 8 + [tone(440.0, 1.0)], video_s=1.0)
    probed = []
    monkeypatch.setattr(
        audio, "probe", lambda *a, **k: probed.append(k) or containers.probe(*a, **k)
    )
    with pytest.raises(SilentAudioError):
        audio.load(path)
    assert len(probed) == audio.MAX_STREAMS  # its own and the next three


def test_a_wav_file_opened_on_a_short_probe_reads_as_on_a_full_one(write_audio):
    """WAV files are opened reading WAV_PROBE_BYTES of them, not FFmpeg's 5 MB: the header says
    all, and the samples and the duration are those a full probe gives."""
    path = write_audio("tone.wav", tone(440.0, 8.0, sr=44_100), 44_100)
    decoded = audio.load(path)
    graph = av.filter.Graph()
    movie = graph.add("amovie", filename=str(path), streams="a:0")
    sink = audio._converted(graph, movie, AudioConfig(), channels=1)
    fully_probed = []
    while True:
        try:
            fully_probed.append(sink.pull().to_ndarray().reshape(-1))
        except av.error.EOFError:
            break
    np.testing.assert_array_equal(decoded.samples, np.concatenate(fully_probed))
    with av.open(str(path)) as container:
        assert decoded.info.duration_s == pytest.approx(container.duration / av.time_base)


def test_mp3_behind_a_pcm_wav_header_is_still_found_on_the_short_probe(tmp_path):
    """A WAV header that says 16-bit PCM over MP3 frames (a mislabelled file) still decodes as
    MP3: read as PCM it would be 2.5 s of noise."""
    mp3 = write(tmp_path / "tone.mp3", tone(440.0, 10.0), SR, bit_rate=64_000).read_bytes()
    if mp3[:3] == b"ID3":  # the frames alone, as a mislabelling program would copy them
        mp3 = mp3[10 + int.from_bytes(bytes(b & 0x7F for b in mp3[6:10]), "big") :]
    fmt = struct.pack("<HHIIHH", 1, 1, SR, 2 * SR, 2, 16)  # PCM, mono, 16-bit
    chunks = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    chunks += b"data" + struct.pack("<I", len(mp3)) + mp3
    path = tmp_path / "mislabelled.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(chunks)) + chunks)
    decoded = audio.load(path)
    assert decoded.info.codec.startswith("mp3")
    assert decoded.info.duration_s == pytest.approx(10.0, abs=0.2)
    spectrum = np.abs(np.fft.rfft(decoded.samples[SR : 9 * SR]))
    assert np.argmax(spectrum) / 8.0 == pytest.approx(440.0, abs=2.0)


def test_a_real_file_with_an_unreadable_packet_decodes_whole(shared_audio):
    """FFmpeg stops at a packet it cannot decode (here one of a Vorbis file); `load` reads the
    file again packet by packet and skips it."""
    path = shared_audio / "supertux__christmas_theme.ogg"
    with pytest.raises(av.error.FFmpegError):
        list(audio._read(path, containers.probe(path), AudioConfig()))
    decoded = audio.load(path)
    assert decoded.info.duration_s == pytest.approx(containers.probe(path).duration_s, abs=0.1)


def test_a_decoded_file_is_held_once_not_twice(write_audio):
    """Blocks are copied into one array as they come, not gathered and concatenated (the
    decoder's own buffers and a second of audio at a time come on top)."""
    path = write_audio("two-minutes.flac", tone(440.0, 120.0, sr=44_100), 44_100)
    tracemalloc.start()
    samples = audio.load(path).samples
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert samples.size == pytest.approx(120 * SR, abs=SR * 0.1)
    assert peak < samples.nbytes + 4_000_000


def test_blocks_past_the_declared_duration_are_all_kept():
    info = containers.AudioInfo("x.ogg", "ogg", "vorbis", SR, 1, duration_s=1.0)
    blocks = [np.full(SR // 2 + i, i, dtype=np.float32) for i in range(9)]
    gathered = audio._gathered(iter(blocks), info, AudioConfig())
    np.testing.assert_array_equal(gathered, np.concatenate(blocks))


@pytest.mark.parametrize("channels", [9, 32])
def test_a_wav_of_more_channels_than_a_layout_names_is_their_average(tmp_path, channels):
    """FFmpeg mixes to mono by the channels' layout, and has none for 9 channels (second-order
    Ambisonics) or 32: such files had been refused as "corrupt or truncated". Past 8 channels
    they are averaged: a tone in every channel comes out as that tone, at its own level."""
    x = tone(440.0, 3.0)
    pcm = np.repeat((x * 32_767).astype("<i2")[:, None], channels, axis=1).tobytes()
    fmt = struct.pack("<HHIIHH", 1, channels, SR, 2 * SR * channels, 2 * channels, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(pcm)) + pcm
    path = tmp_path / f"{channels}.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    decoded = audio.load(path)
    assert decoded.info.channels == channels and decoded.samples.size == x.size
    assert dominant_hz(decoded.samples, SR) == pytest.approx(440.0, abs=1.0)
    assert np.abs(decoded.samples).max() == pytest.approx(0.3, abs=0.01)
