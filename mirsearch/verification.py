"""Verification: whether two prints (fingerprint.py) agree along a candidate alignment, and the
line their agreement draws.

The check cuts the aligned stretch into overlapping chunks, lets each find its best lag within a
second of the predicted line (vocoder tempo changes and speed estimates drift a little), and
takes the median of the chunks' correlations: a copy correlates, re-encoded, filtered, noisy,
stretched or not; other music with the same instruments, tempo and key does not, because its
notes and onsets fall elsewhere. The chunks' best lags also draw the line a copy follows: a copy
5 % fast checked on a line at speed 1.0 drifts 1.6 frames a second, and the line through the
lags gives its speed and offset (`_fitted`), along which the prints are checked again. Each
chunk's best correlation is discounted by a share of its median over the lags: slow
alike-sounding music (long pads, drones) correlates at every lag, a copy only at its own. Both
prints are read softly floored (correlation.py).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mirsearch import correlation

# a line is refitted to the chunks' best lags (`_fitted`) when those on it span at least this
# long, lie within this of it (1.5 print frames) and are more than half of them, and its speed
# differs by at most this (a ±5 % copy of a ±5 % copy, 10.5 % away, can be voted at 1.0 on a
# reading shifted by a semitone)
RESPEED_MIN_SPAN_S, RESPEED_MAX_RESIDUAL_S, RESPEED_MAX_CHANGE = 2.0, 1.5 / 32, 0.12
# the prints are checked again along the line the chunks draw (`checks`) when its speed differs by
# more than this or its stretch begins or ends elsewhere; the chunks read on a line a few per cent
# off are taken to be on the line they draw within this share of the drift over a chunk besides
# RESPEED_MAX_RESIDUAL_S (checked 10.5 % off, their best lags waver by a tenth of a second)
RECHECK_MIN_CHANGE, RECHECK_SMEAR = 0.002, 0.25


@dataclass(frozen=True)
class Alignment:
    """Where a candidate says the query lies on the track: query seconds → track seconds."""

    query_start_s: float
    query_end_s: float
    track_offset_s: float  # track time at query_start_s
    speed: float  # track seconds per query second


@dataclass(frozen=True)
class Weighted:
    """A query print whose cells count by `weights` (same shape, 0-1) in the check: the cells
    another sound covers (a voice over the music, repeating.py) count for little or nothing."""

    print: np.ndarray  # (bands, frames)
    weights: np.ndarray  # (bands, frames)


Query = np.ndarray | Weighted  # a query print, each cell counting fully or by its weight


@dataclass(frozen=True)
class Check:
    """What the prints say about an alignment (`check`)."""

    agreement: float  # median of the chunks' best correlations, less their background share
    alignment: Alignment  # the alignment refitted to the chunks' best lags (`checks`)


def check(query: Query, track: np.ndarray, alignment: Alignment, **options) -> Check:
    """The prints' agreement along one alignment: `checks` of one."""
    return checks([(query, track, alignment)], **options)[0]


def checks(
    items: Sequence[tuple[Query, np.ndarray, Alignment]],
    *,
    frames_per_s: float,
    chunk_s: float,
    chunk_hop_s: float,
    max_lag_s: float,
    max_chunks: int,
    background: float = 0.0,
) -> list[Check]:
    """For each (query, track, alignment) of `items`, the prints' agreement along the alignment:
    the median over the aligned stretch's chunks of the best correlation within ±max_lag_s, less
    `background` times the chunk's median correlation over those lags; and the alignment those
    best lags draw.

    `query` and `track` are prints (bands, frames), the track's usually decoded. Both are
    softly floored (`correlation.floored`), then centred per band and per frame within the
    chunk: a gain or EQ change (a constant per band in dB) cancels, and so does the loudness
    contour (a fade or crescendo, which any two pieces can share). A `Weighted` query's chunk
    is correlated cell by cell at its weights (its centred values scaled by them, and its norm
    and the track chunk's both taken under them). Chunks start every `chunk_hop_s`, so they
    overlap and a short stretch still gets several; a long stretch is checked on `max_chunks`
    of them spread evenly over it. The agreement is 0.0, and the alignment unchanged, when no
    chunk of the stretch lies inside both prints. The chunks of all the items are correlated
    in one pass (a query's ~5 checks are small: one at a time, they cost mostly NumPy's calls).

    Where the chunks' best lags draw another line than the alignment (another speed, or a
    stretch that begins before the track does or goes on after it ends), the prints are
    checked again along that line, and that check is the answer when its own chunks lie on a
    line (`_fitted`, to which it is refitted once more). Checked on a line a few per cent off,
    every chunk is smeared across the drift within it and its best lag can sit a beat away, a
    chunk hanging over the track's start or end finds no lag at all, and the chunks' median
    agreement comes from a line that is not the copy's: a sample-exact excerpt inside a longer
    upload had been reported 1.5 s early at speed 0.94, and a copy 10.5 % away at speed 1.000.
    """
    read = functools.partial(
        _read,
        frames_per_s=frames_per_s,
        chunk_s=chunk_s,
        chunk_hop_s=chunk_hop_s,
        max_lag_s=max_lag_s,
        max_chunks=max_chunks,
        background=background,
    )
    track_s = [track.shape[1] / frames_per_s for _, track, _ in items]
    done, again = [], {}
    for i, ((_, _, alignment), found) in enumerate(zip(items, read(items), strict=True)):
        if found is None:  # no chunk inside both prints
            done.append(Check(0.0, alignment))
            continue
        refitted = _fitted(alignment, found) or alignment
        done.append(Check(found.agreement, _trimmed(refitted, track_s[i])))
        line = _fitted(alignment, found, smear_s=RECHECK_SMEAR * chunk_s)
        if line is not None:
            line = _trimmed(line, track_s[i])
            if _moved(line, alignment, frames_per_s):
                again[i] = line
    rechecked = read([(items[i][0], items[i][1], line) for i, line in again.items()])
    for (i, line), found in zip(again.items(), rechecked, strict=True):
        confirmed = None if found is None else _fitted(line, found)
        if confirmed is not None:
            done[i] = Check(found.agreement, _trimmed(confirmed, track_s[i]))
    return done


@dataclass(frozen=True)
class _Read:
    """One alignment's chunks read on the prints (`_read`)."""

    agreement: float  # the median of the chunks' best correlations, less their background share
    centres_s: np.ndarray  # query times of the chunks whose best lag is free (not a bound) ...
    lags_s: np.ndarray  # ... and those best lags, in seconds


def _read(
    items: Sequence[tuple[Query, np.ndarray, Alignment]],
    *,
    frames_per_s: float,
    chunk_s: float,
    chunk_hop_s: float,
    max_lag_s: float,
    max_chunks: int,
    background: float,
) -> list[_Read | None]:
    """Each item's chunks correlated at every lag, all items in one pass (`checks`); None for an
    item none of whose chunks lies inside both prints."""
    n = max(2, round(chunk_s * frames_per_s))
    hop = max(1, round(chunk_hop_s * frames_per_s))
    max_lag = round(max_lag_s * frames_per_s)
    lags = np.arange(-max_lag, max_lag + 1)
    done: list[_Read | None] = [None] * len(items)
    cut = functools.partial(
        _chunks, n=n, hop=hop, lags=lags, max_chunks=max_chunks, frames_per_s=frames_per_s
    )
    chunked = [(i, cut(_print(query), track, line)) for i, (query, track, line) in enumerate(items)]
    chunked = [(i, chunks) for i, chunks in chunked if len(chunks)]
    if not chunked:
        return done
    read_chunks = [_query_chunks(items[i][0], chunks.frames) for i, chunks in chunked]
    q = np.concatenate([chunks for chunks, _, _ in read_chunks])
    energies = np.concatenate([energies for _, energies, _ in read_chunks])
    weights = None  # the weighted energies only where some query is weighted; plain ones at 1
    if any(w is not None for _, _, w in read_chunks):
        weights = np.concatenate([np.ones_like(c) if w is None else w for c, _, w in read_chunks])
    correlations = correlation.lag_correlations(
        q,
        energies,
        [items[i][1] for i, _ in chunked],
        [chunks.columns for _, chunks in chunked],
        lags,
        weights,
    )
    inside = np.concatenate([chunks.inside for _, chunks in chunked])
    # the lags inside the track are a run [low, high] of each chunk's row
    low, high = inside.argmax(axis=1), lags.size - 1 - inside[:, ::-1].argmax(axis=1)
    best = np.where(inside, correlations, -np.inf).argmax(axis=1)
    rows = np.arange(best.size)
    scores = correlations[rows, best] - background * _row_medians(correlations, inside)
    free = (low < best) & (best < high)  # a best lag at an end of the lags is a bound, not a lag
    bounds = np.cumsum([0] + [len(chunks) for _, chunks in chunked])
    for (i, chunks), start, stop in zip(chunked, bounds[:-1], bounds[1:], strict=True):
        own = slice(start, stop)
        mine = free[own]
        done[i] = _Read(
            agreement=float(np.median(scores[own])),
            centres_s=(chunks.frames[mine, 0] + n / 2) / frames_per_s,
            lags_s=lags[best[own][mine]] / frames_per_s,
        )
    return done


@dataclass(frozen=True)
class _Chunks:
    """The chunks of an aligned stretch that some lag keeps inside the track."""

    frames: np.ndarray  # (chunks, n) their query frames
    columns: np.ndarray  # (chunks, n) the track frames the line puts them on
    inside: np.ndarray  # (chunks, lags) bool: whether the lag keeps the chunk on the track

    def __len__(self) -> int:
        return self.frames.shape[0]


def _print(query: Query) -> np.ndarray:
    return query.print if isinstance(query, Weighted) else query


def _query_chunks(
    query: Query, frames: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(chunks, n) query frames → the chunks (chunks, bands, n) floored and centred, their
    energies (chunks,) and their cells' weights (chunks, bands, n; None for a plain print).
    Where `query` is Weighted, each chunk is scaled by its weights and centred again, and its
    energy is its weighted sum of squares (the track chunk's is taken under the same weights:
    `correlation.lag_correlations`)."""
    chunks = correlation.centred(np.moveaxis(correlation.floored(_print(query)[:, frames]), 1, 0))
    if not isinstance(query, Weighted):
        return chunks, np.square(chunks).sum(axis=(1, 2)), None
    weights = np.moveaxis(query.weights[:, frames], 1, 0).astype(np.float64)
    energies = (weights * np.square(chunks)).sum(axis=(1, 2))
    return correlation.centred(weights * chunks), energies, weights


def _chunks(
    query: np.ndarray,
    track: np.ndarray,
    alignment: Alignment,
    *,
    n: int,
    hop: int,
    lags: np.ndarray,
    max_chunks: int,
    frames_per_s: float,
) -> _Chunks:
    """The `n`-frame chunks, every `hop` frames (at most `max_chunks`, spread evenly), of the
    stretch `alignment` puts on `track`, those that lie inside both prints at some lag."""
    first = max(0, round(alignment.query_start_s * frames_per_s))
    stop = min(query.shape[1], round(alignment.query_end_s * frames_per_s))
    starts = np.arange(first, max(first + 1, stop - n + 1), hop)
    starts = starts[starts + n <= query.shape[1]]
    if starts.size > max_chunks:
        starts = starts[np.round(np.linspace(0, starts.size - 1, max_chunks)).astype(int)]
    frames = starts[:, None] + np.arange(n)  # (chunks, n) query frames
    seconds = alignment.track_offset_s + alignment.speed * (
        frames / frames_per_s - alignment.query_start_s
    )
    columns = np.round(seconds * frames_per_s).astype(np.int64)  # the line's track frames
    inside = (columns[:, :1] + lags >= 0) & (columns[:, -1:] + lags < track.shape[1])
    kept = inside.any(axis=1)
    return _Chunks(frames[kept], columns[kept], inside[kept])


def _row_medians(x: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """(rows, columns) → each row's median over its `kept` columns (at least one a row)."""
    counts = kept.sum(axis=1)
    ordered = np.sort(np.where(kept, x, np.inf), axis=1)
    rows = np.arange(x.shape[0])
    return (ordered[rows, (counts - 1) // 2] + ordered[rows, counts // 2]) / 2


def _fitted(alignment: Alignment, found: _Read, *, smear_s: float = 0.0) -> Alignment | None:
    """The alignment moved onto the line the chunks' best lags draw, or None where they cannot
    tell: fewer than three chunks with a free best lag, chunks spanning less than
    RESPEED_MIN_SPAN_S, or half of them or fewer on the line (other music: its best lags fall
    anywhere, three of six on one line by chance).

    The line is the one through two chunks, at most RESPEED_MAX_CHANGE steep (a copy's speed
    is never that far from the vote's), that most chunks lie on (within
    RESPEED_MAX_RESIDUAL_S, plus `smear_s` per unit of its slope: checked on a line a few per
    cent off, a chunk's best lag wavers by a share of the drift within it), fitted again to
    those by least squares: a chunk caught on a neighbouring beat, or hanging over the track's
    start or end, does not bend it (the median of the pairwise slopes did, with two chunks of
    eight off it). The windows' vote finds the speed only to a few per cent (a copy 5 % fast
    can win at 1.0); the chunks, each free to slide, show the drift at 1/32 s.
    """
    centres_s, lags_s = found.centres_s, found.lags_s
    if centres_s.size < 3 or np.ptp(centres_s) < RESPEED_MIN_SPAN_S:
        return None
    i, j = np.triu_indices(centres_s.size, k=1)  # every pair of chunks, i before j
    slopes = (lags_s[j] - lags_s[i]) / (centres_s[j] - centres_s[i])  # centres rise
    steady = np.abs(slopes) <= RESPEED_MAX_CHANGE
    if not steady.any():
        return None
    i, j, slopes = i[steady], j[steady], slopes[steady]
    through = lags_s[i] - slopes * centres_s[i]  # (pairs,) each pair's line at query time 0
    residuals = np.abs(lags_s - (through[:, None] + slopes[:, None] * centres_s))
    near = residuals <= (RESPEED_MAX_RESIDUAL_S + smear_s * np.abs(slopes))[:, None]
    on = near[np.lexsort((np.where(near, residuals, 0.0).sum(axis=1), -near.sum(axis=1)))[0]]
    if on.sum() < 3 or 2 * on.sum() <= centres_s.size or np.ptp(centres_s[on]) < RESPEED_MIN_SPAN_S:
        return None
    slope, at_zero = (float(c) for c in np.polyfit(centres_s[on], lags_s[on], 1))
    fitted = dataclasses.replace(
        alignment,
        track_offset_s=alignment.track_offset_s + at_zero + slope * alignment.query_start_s,
        speed=alignment.speed + slope,
    )
    return _from_track_start(fitted) if alignment.track_offset_s == 0.0 else fitted


def _from_track_start(alignment: Alignment) -> Alignment:
    """A line that began where the track begins (the windows' vote pins its start there, a
    catalog hop coarse), refitted to begin later on the track, begun where the refitted line
    puts the track's start, or at the query's: a 10 s upload of a 10 s track had matched from
    0.5 s for 9.5 s."""
    before_s = min(alignment.query_start_s, alignment.track_offset_s / alignment.speed)
    return dataclasses.replace(
        alignment,
        query_start_s=alignment.query_start_s - before_s,
        track_offset_s=alignment.track_offset_s - alignment.speed * before_s,
    )


def _trimmed(alignment: Alignment, track_s: float) -> Alignment:
    """The alignment's stretch cut to where it lies on the track (`track_s` long): a query that
    holds the whole track begins and ends where the track does, not where its windows' line,
    a catalog hop coarse, put them."""
    start_s, end_s, speed = alignment.query_start_s, alignment.query_end_s, alignment.speed
    if alignment.track_offset_s < 0.0:
        start_s = start_s - alignment.track_offset_s / speed
    track_end_s = alignment.track_offset_s + speed * (end_s - alignment.query_start_s)
    if track_end_s > track_s:
        end_s = end_s - (track_end_s - track_s) / speed
    if end_s <= start_s:  # a line reaching the track at no point: left as it came
        return dataclasses.replace(alignment, track_offset_s=max(0.0, alignment.track_offset_s))
    return Alignment(
        query_start_s=start_s,
        query_end_s=end_s,
        track_offset_s=max(
            0.0, alignment.track_offset_s + speed * (start_s - alignment.query_start_s)
        ),
        speed=speed,
    )


def _moved(line: Alignment, alignment: Alignment, frames_per_s: float) -> bool:
    """Whether `line` would be checked on other chunks than `alignment`: another speed (more
    than RECHECK_MIN_CHANGE), or a stretch begun or ended more than a frame away."""
    frame_s = 1.0 / frames_per_s
    return (
        abs(line.speed - alignment.speed) > RECHECK_MIN_CHANGE
        or abs(line.query_start_s - alignment.query_start_s) > frame_s
        or abs(line.query_end_s - alignment.query_end_s) > frame_s
    )
