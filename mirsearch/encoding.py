"""Writing audio files: mono float32 samples encoded in the format their extension names."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from mirsearch.errors import AudioError

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
