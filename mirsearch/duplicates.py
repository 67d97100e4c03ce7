"""Near-duplicate detection: window matches that agree on one track, offset and speed.

Each query window fetches its nearest catalog windows. For every track they point to, the pairs
(query time t, track time u) are voted into a grid of speeds and offsets (u ≈ speed·t + offset,
speeds 0.94–1.06), so a re-encoded, filtered, noisy, sped-up or pitch-shifted copy still lines up.
The best lines are then verified at 1/32 s on the tracks' prints (`fingerprint.check`): a
copy's spectrogram moves with the query's, other music with the same sound does not, and the
prints put a copy's line where it lies (its speed to a few thousandths, its offset to a few
hundredths of a second, where the windows' vote knows them to a few per cent). The windows'
evidence and the prints' agreement give a score in [0, 1], compared with a threshold calibrated on
music that is not in the catalog (`mirsearch/assets/duplicates.json`; it belongs to this scoring
code, so queries read it from there, and the index records it for the check on ingest).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mirsearch import fingerprint
from mirsearch.config import DuplicateConfig, FeatureConfig
from mirsearch.index import VectorIndex

log = logging.getLogger(__name__)

CALIBRATION = Path(__file__).resolve().parent / "assets" / "duplicates.json"
SPEED_PRIOR = 0.1  # support lost per unit of speed change: 0.5 % at ±5 %
# Ranking matches of several versions of one recording (their scores all near 1): agreement lost
# per unit of speed change, so the version the clip plays at speed 1.0 comes first unless another
# agrees by more than 0.1 better at ±5 % (an exact copy agrees at 0.9 and more).
RANK_SPEED_PENALTY = 2.0

# Track ids → their prints (bands, frames) uint8; ids without a print are left out.
Prints = Callable[[Sequence[int]], Mapping[int, np.ndarray]]


@dataclass(frozen=True)
class Reading:
    """A query as one pitch hypothesis reads it (embeddings.Embedder.matching)."""

    vectors: np.ndarray  # (n, D) its windows' matching vectors
    offsets_s: np.ndarray  # (n,) where they start
    fingerprint: np.ndarray  # (bands, frames) its print (fingerprint.make_print)


@dataclass(frozen=True)
class Match:
    """A catalog track found inside a query: where, for how long, how fast, how sure."""

    track_id: int
    score: float  # in [0, 1]; a duplicate when ≥ the calibrated threshold
    query_offset_s: float  # where in the query the catalog excerpt begins
    track_offset_s: float  # where in the track it begins
    duration_s: float  # how long the aligned stretch is (query time)
    speed: float  # track seconds per query second (1.05: the upload plays the track 5% fast)
    windows: int  # query windows that agree
    similarity: float  # their mean cosine similarity
    agreement: float = 0.0  # the prints' correlation along the line (fingerprint.check)

    def to_dict(self) -> dict:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


def calibrated_threshold(model_hash: str, *, config: DuplicateConfig = DuplicateConfig()) -> float:
    """The threshold calibrated for this model, or the configured default (with a warning)."""
    if CALIBRATION.is_file():
        calibration = json.loads(CALIBRATION.read_text())
        if calibration.get("model_sha256") == model_hash:
            return float(calibration["threshold"])
    log.warning(
        "no duplicate threshold calibrated for model %s; using %.2f (run "
        "`make eval-dupes` to calibrate)",
        model_hash[:12],
        config.default_threshold,
    )
    return config.default_threshold


def find_matches(
    index: VectorIndex,
    query_vectors: np.ndarray,
    query_offsets_s: np.ndarray,
    query_print: np.ndarray,
    prints: Prints,
    *,
    config: DuplicateConfig = DuplicateConfig(),
    threshold: float | None = None,
    exclude: frozenset[int] = frozenset(),
) -> list[Match]:
    """Catalog tracks the query contains, best first; `threshold` None uses config's default."""
    threshold = config.default_threshold if threshold is None else threshold
    reading = Reading(query_vectors, query_offsets_s, query_print)
    found = candidates(index, [reading], prints, config=config, exclude=exclude)
    return ranked([m for m in found if m.score >= threshold])


def ranked(matches: Sequence[Match]) -> list[Match]:
    """Matches in the order to show them: the version the query plays at speed 1.0 with the
    highest print agreement first.

    Several versions of one recording (an original, a sped-up copy, a re-release) all score near
    1; what separates them is how closely the prints agree and at what speed.
    """
    return sorted(
        matches,
        key=lambda m: (
            -(m.agreement - RANK_SPEED_PENALTY * abs(m.speed - 1.0)),
            -m.score,
            m.track_id,
        ),
    )


def candidates(
    index: VectorIndex,
    readings: Sequence[Reading],
    prints: Prints,
    *,
    config: DuplicateConfig = DuplicateConfig(),
    exclude: frozenset[int] = frozenset(),
) -> list[Match]:
    """The best alignments of the query with catalog tracks, verified and scored, best first.

    Each reading of the query (a pitch hypothesis) gives every track its windows point to a
    best line; the tracks of most window evidence (`strongest`) are checked on the prints along
    each of their lines, and each keeps its best-scoring one.
    """
    per_reading = [
        _lines(index, r.vectors, r.offsets_s, config=config, exclude=exclude) for r in readings
    ]
    frames_per_s = fingerprint.frames_per_s(FeatureConfig(**index.meta.feature_config))
    duration_s = readings[0].fingerprint.shape[1] / frames_per_s if readings else 0.0
    chosen = strongest(per_reading, duration_s, config)
    track_prints = prints(sorted(chosen)) if chosen else {}
    query_prints = [r.fingerprint for r in readings]
    return verified_best(per_reading, query_prints, chosen, track_prints, frames_per_s, config)


def strongest(
    per_reading: Sequence[Sequence[Match]], duration_s: float, config: DuplicateConfig
) -> set[int]:
    """The tracks whose best line over the readings has the most window evidence
    (`_window_logit`, ties to the lower id): config.verify_tracks of them per started minute of
    query, so a long upload holding many catalog tracks has them all checked.

    Most of a query's tracks are other music its windows brush against; each strongest track is
    checked along every reading's line, as the reading with the best windows is not always the
    one whose print agrees best (reverb, noise: checking only the best line of each of 8 tracks
    lost 5 s reverb clips, 89 → 82 %, in a replay of `make eval-dupes`). Five tracks instead of
    eight lost the quieter of two catalog tracks mixed in one upload (bench/background.py: both
    listed in 4 of 30 mixes at equal level instead of 6).
    """
    evidence: dict[int, float] = {}
    for lines in per_reading:
        for m in lines:
            evidence[m.track_id] = max(evidence.get(m.track_id, -np.inf), _window_logit(m, config))
    n = config.verify_tracks * max(1, int(np.ceil(duration_s / 60.0)))
    return set(sorted(evidence, key=lambda t: (-evidence[t], t))[:n])


def verified_best(
    per_reading: Sequence[Sequence[Match]],
    query_prints: Sequence[np.ndarray],
    chosen: set[int],
    track_prints: Mapping[int, np.ndarray],
    frames_per_s: float,
    config: DuplicateConfig,
) -> list[Match]:
    """Each chosen track's lines verified with their reading's print (`query_prints`, one a
    reading) and its best-scoring one kept, highest score first. The prints' agreement, then the
    windows' similarity, settle ties of clear copies, whose scores all round to 1.0: the
    hypothesis the query really plays at is the one kept."""
    best: dict[int, Match] = {}
    for lines, query_print in zip(per_reading, query_prints, strict=True):
        for m in lines:
            if m.track_id not in chosen:
                continue
            found = _verified(m, query_print, track_prints.get(m.track_id), frames_per_s, config)
            if m.track_id not in best or _evidence(found) > _evidence(best[m.track_id]):
                best[m.track_id] = found
    return sorted(best.values(), key=lambda m: (-m.score, m.track_id))


def _verified(
    m: Match,
    query_print: np.ndarray,
    track_print: np.ndarray | None,
    frames_per_s: float,
    config: DuplicateConfig,
) -> Match:
    """The line `m` with its prints' agreement (0 without a track print) and its score, its
    speed and track offset refitted to the prints (`fingerprint.check`)."""
    alignment = fingerprint.Alignment(
        query_start_s=m.query_offset_s,
        query_end_s=m.query_offset_s + m.duration_s,
        track_offset_s=m.track_offset_s,
        speed=m.speed,
    )
    checked = fingerprint.Check(0.0, alignment)
    if track_print is not None:
        checked = fingerprint.check(
            query_print,
            track_print,
            alignment,
            frames_per_s=frames_per_s,
            chunk_s=config.verify_chunk_s,
            chunk_hop_s=config.verify_chunk_hop_s,
            max_lag_s=config.verify_max_lag_s,
            max_chunks=config.verify_max_chunks,
            background=config.verify_background,
        )
    agreement_weight = config.weight_agreement + config.weight_agreement_log_windows * float(
        np.log(m.windows)
    )
    logit = _window_logit(m, config) + agreement_weight * checked.agreement
    score = 1.0 / (1.0 + np.exp(-logit))
    return dataclasses.replace(
        m,
        score=round(float(score), 4),
        agreement=round(checked.agreement, 4),
        track_offset_s=checked.alignment.track_offset_s,
        speed=checked.alignment.speed,
    )


def _window_logit(m: Match, config: DuplicateConfig) -> float:
    """The windows' share of the score's logit: their mean similarity and (log) number."""
    return (
        config.weight_similarity * m.similarity
        + config.weight_log_windows * float(np.log(m.windows))
        + config.bias
    )


def _lines(
    index: VectorIndex,
    query_vectors: np.ndarray,
    query_offsets_s: np.ndarray,
    *,
    config: DuplicateConfig,
    exclude: frozenset[int],
) -> list[Match]:
    """The best line with every track the query's windows point to (not yet scored)."""
    if len(query_vectors) == 0 or index.n_tracks == 0:
        return []
    k = min(config.neighbours, index.ntotal_windows)
    scores, tracks, windows = index.search_windows(np.ascontiguousarray(query_vectors), k)
    t = np.repeat(np.asarray(query_offsets_s, dtype=np.float64), k)
    s, tid, u = scores.reshape(-1), tracks.reshape(-1), windows.reshape(-1) * index.meta.hop_s
    keep = (tid >= 0) & (s >= config.min_similarity)
    if exclude:
        keep &= ~np.isin(tid, list(exclude))
    return _best_lines(tid[keep], t[keep], u[keep], s[keep], index.meta.hop_s, config)


def _evidence(m: Match) -> tuple[float, float, float]:
    return (m.score, m.agreement, m.similarity)


def _best_lines(
    tid: np.ndarray,
    t: np.ndarray,
    u: np.ndarray,
    s: np.ndarray,
    hop_s: float,
    config: DuplicateConfig,
) -> list[Match]:
    """Each track's (query time t, track time u, similarity s) pairs voted into speed × offset
    cells, all tracks at once; the cell with most support makes the track's line.

    A cell's support is the sum, over query times, of the best similarity among that time's
    pairs lying on the cell's line (`_best_cells`). Tracks with fewer than config.min_windows
    query times pointing to them never make a line.
    """
    if tid.size == 0:
        return []
    order = np.lexsort((t, tid))  # by track, then query time; stable
    tid, t, u, s = tid[order], t[order], u[order], s[order]
    new_track = np.r_[True, tid[1:] != tid[:-1]]
    new_time = new_track | np.r_[True, t[1:] != t[:-1]]  # the first pair of a (track, time)
    starts = np.flatnonzero(new_track)
    times_per_track = np.add.reduceat(new_time.astype(np.int64), starts)
    enough = np.repeat(times_per_track >= config.min_windows, np.diff(np.r_[starts, tid.size]))
    if not enough.any():
        return []
    tid, t, u, s = tid[enough], t[enough], u[enough], s[enough]
    new_track, new_time = new_track[enough], new_time[enough]
    starts = np.flatnonzero(new_track)
    ends = np.r_[starts[1:], tid.size]
    speeds = np.asarray(config.speeds)
    slack = config.tolerance_s + hop_s / 2  # on the line: track time within this of it
    by_speed = u[None, :] - speeds[:, None] * t[None, :]  # (speeds, pairs)
    supports, cells = _best_cells(
        by_speed, np.cumsum(new_track) - 1, np.cumsum(new_time) - 1, s, hop_s, slack
    )
    # A short query barely constrains speed (neighbouring catalog windows overlap and look
    # alike): a slight preference for normal speed settles near-ties (the first speed of the
    # best weighted support wins).
    chosen = np.argmax(supports * (1 - SPEED_PRIOR * np.abs(speeds - 1.0)), axis=1)
    matches = []
    for g, (first, end) in enumerate(zip(starts, ends, strict=True)):
        k = int(chosen[g])
        match = _line_match(
            int(tid[first]),
            t[first:end],
            s[first:end],
            by_speed[k, first:end],
            config.speeds[k],
            float(cells[g, k]),
            slack,
            config,
        )
        if match is not None:
            matches.append(match)
    return matches


def _line_match(
    track_id: int,
    t: np.ndarray,
    s: np.ndarray,
    pair_offsets: np.ndarray,
    speed: float,
    cell: float,
    slack: float,
    config: DuplicateConfig,
) -> Match | None:
    """One track's line through the cell `cell` at `speed`, from its pairs on it."""
    on_line = np.abs(pair_offsets - cell) <= slack
    times, sims, offsets = _per_query_window(t[on_line], s[on_line], pair_offsets[on_line])
    if times.size < config.min_windows:
        return None
    # The cell's centre is only a catalog hop from the truth; the windows' own offsets, each a
    # hop-quantised guess, agree on it more closely (their median).
    offset = float(np.median(offsets))
    start = float(times.min())
    return Match(
        track_id=track_id,
        score=0.0,
        query_offset_s=start,
        track_offset_s=float(max(0.0, speed * start + offset)),
        duration_s=float(times.max() - start + config.window_s),
        speed=float(speed),
        windows=int(times.size),
        similarity=float(sims.mean()),
    )


def _best_cells(
    offsets: np.ndarray,
    group_of: np.ndarray,
    time_of: np.ndarray,
    s: np.ndarray,
    hop_s: float,
    slack: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(speeds, pairs) offsets of pairs in groups (tracks, numbered from 0 in order) → for each
    group and speed, its best cell's support and offset, each (groups, speeds).

    A line's cells are the offsets, a hop apart, that some pair of its group rounds to at its
    speed; a cell's support is the sum over query times (`time_of`: numbered from 0 across the
    groups, in order) of the best similarity of that time's pairs within `slack` of it (the
    first of equal cells wins). A pair lies near its own cell and at most the next few, so it
    votes only there. The votes are kept as (cell, query time) slots and the best of each slot
    found by sorting: memory in proportion to the votes, where a dense (cells, query times)
    grid grew with the square of the upload's length (an hour against its own track: 1.3 GB).
    """
    n_speeds = offsets.shape[0]
    rounded = np.round(offsets / hop_s).astype(np.int64)
    reach = int(np.ceil(slack / hop_s + 0.5))  # cells a pair can lie near, on either side
    low = int(rounded.min()) - reach
    span = int(rounded.max()) + reach - low + 1  # keys of one line never meet the next line's
    line_of = group_of[None, :] * n_speeds + np.arange(n_speeds)[:, None]  # (speeds, pairs)
    keys = rounded - low + line_of * span  # a cell: its line and its offset, in one number
    cell_keys, own_row = np.unique(keys, return_inverse=True)
    own_row = own_row.reshape(keys.shape)  # flat in some NumPy releases
    n_slots = int(time_of[-1]) + 1
    times = np.broadcast_to(time_of, offsets.shape)
    sims = np.broadcast_to(s, offsets.shape)
    slots, values = [], []
    for step in range(-reach, reach + 1):
        neighbour = np.minimum(np.searchsorted(cell_keys, cell_keys + step), cell_keys.size - 1)
        row = neighbour[own_row]
        near = cell_keys[row] == keys + step
        near[near] = np.abs(offsets[near] - (rounded[near] + step) * hop_s) <= slack
        slots.append(row[near] * n_slots + times[near])
        values.append(sims[near])
    slot, value = np.concatenate(slots), np.concatenate(values)
    order = np.argsort(slot, kind="stable")
    slot, value = slot[order], value[order]
    starts = np.flatnonzero(np.r_[True, slot[1:] != slot[:-1]])
    best_of_slot = np.maximum.reduceat(value, starts)
    support = np.bincount(slot[starts] // n_slots, weights=best_of_slot, minlength=cell_keys.size)
    # Every line has cells, in order of key: each line's first cell of its greatest support.
    line = cell_keys // span
    bounds = np.flatnonzero(np.r_[True, line[1:] != line[:-1]])
    greatest = np.maximum.reduceat(support, bounds)
    is_best = support == np.repeat(greatest, np.diff(np.r_[bounds, support.size]))
    best = np.flatnonzero(is_best)
    best = best[np.r_[True, line[best][1:] != line[best][:-1]]]
    cells = (cell_keys[best] - line[best] * span + low) * hop_s
    return greatest.reshape(-1, n_speeds), cells.reshape(-1, n_speeds)


def _per_query_window(
    t: np.ndarray, s: np.ndarray, offset: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each query time once, with its best similarity and that pair's offset."""
    order = np.lexsort((-s, t))
    t, s, offset = t[order], s[order], offset[order]
    first = np.ones(t.size, dtype=bool)
    first[1:] = t[1:] != t[:-1]
    return t[first], s[first], offset[first]
