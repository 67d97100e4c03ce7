"""A stretch of an audio file decoded by seeking to it, mono float32 at one rate: the part of a
catalog track an upload holds, read back to take it out of the upload (residual.py) without
decoding the whole track (a 7 min MP3 whole takes ~0.7 s here, 10 s of it ~20 ms)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from mirsearch.audio import conversion_for, drained
from mirsearch.config import AudioConfig
from mirsearch.containers import chosen_stream, open_container, reason
from mirsearch.errors import AudioError


def excerpt(
    path: Path, start_s: float, duration_s: float, *, config: AudioConfig = AudioConfig()
) -> tuple[np.ndarray, float]:
    """`path`'s audio from `start_s` for `duration_s` (less at its end), mono float32 at
    config.sample_rate, and where in the file its first sample lies (s): FFmpeg seeks to the
    packet before `start_s`, so the stretch may begin a little earlier. AudioError when the file
    cannot be read or holds nothing there. Where it begins is told to within the codec's delay
    (an MP3's ~70 ms, Opus's pre-skip), as the container's timestamps have it."""
    first_s = graph = sink = None
    end_s = start_s + duration_s
    with open_container(Path(path)) as container:
        stream = container.streams.audio[chosen_stream(container)]
        try:
            if start_s > 0 and stream.time_base:
                container.seek(int(start_s / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                at_s = frame.time
                if at_s is None:
                    raise AudioError(f"{path}: its audio frames carry no timestamps")
                if graph is None:
                    first_s = at_s
                    graph, sink = conversion_for(frame, config)
                frame.pts = None  # the conversion counts samples, not the file's timestamps
                graph.push(frame)
                if at_s > end_s:
                    break
            blocks = list(drained(graph, sink, flush=True)) if graph else []
        except (av.error.FFmpegError, ValueError) as exc:
            raise AudioError(
                f"{path}: cannot be read from {start_s:.1f} s ({reason(exc)})"
            ) from exc
    samples = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    if first_s is None or first_s + samples.size / config.sample_rate <= start_s:
        raise AudioError(f"{path}: no audio from {start_s:.1f} s on")
    return samples, float(first_s)
