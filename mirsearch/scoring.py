"""Duplicate scores: a checked line scored (Match), the calibrated threshold, versions ranked.

A line's windows (their mean similarity and number) and its prints' agreement along it
(`verification.check`) give one score in [0, 1], a logistic of weights chosen on the `make
eval-dupes` queries (DuplicateConfig). A query contains a catalog track when its score reaches a
threshold calibrated on music that is not in the catalog (`mirsearch/assets/duplicates.json`; it
belongs to this scoring code, so queries read it from there, and the index records it for the
check on ingest).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from mirsearch import lines, verification
from mirsearch.config import DuplicateConfig

log = logging.getLogger(__name__)

CALIBRATION = Path(__file__).resolve().parent / "assets" / "duplicates.json"
# Ranking matches of several versions of one recording (their scores all near 1): agreement lost
# per unit of speed change, so the version the clip plays at speed 1.0 comes first unless another
# agrees by more than 0.1 better at ±5 % (an exact copy agrees at 0.9 and more).
RANK_SPEED_PENALTY = 2.0


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
    agreement: float = 0.0  # the prints' correlation along the line (verification.check)

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


def scored(line: lines.Line, checked: verification.Check, config: DuplicateConfig) -> Match:
    """`line`'s match: its windows' evidence and its prints' agreement in one score."""
    logit = window_logit(line, config) + _agreement_logit(line.windows, checked.agreement, config)
    return Match(
        track_id=line.track_id,
        score=_probability(logit),
        query_offset_s=line.query_offset_s,
        track_offset_s=checked.alignment.track_offset_s,
        duration_s=line.duration_s,
        speed=checked.alignment.speed,
        windows=line.windows,
        similarity=line.similarity,
        agreement=round(checked.agreement, 4),
    )


def less_sure(m: Match, logits: float, config: DuplicateConfig) -> Match:
    """`m` scored `logits` lower: evidence found where more chances were taken to find it."""
    line = lines.Line(m.track_id, 0.0, 0.0, 0.0, 1.0, m.windows, m.similarity)
    logit = window_logit(line, config) + _agreement_logit(m.windows, m.agreement, config)
    return replace(m, score=_probability(logit - logits))


def _agreement_logit(windows: int, agreement: float, config: DuplicateConfig) -> float:
    """The prints' share of the score's logit: it counts for more the longer the stretch."""
    weight = config.weight_agreement + config.weight_agreement_log_windows * float(np.log(windows))
    return weight * agreement


def _probability(logit: float) -> float:
    return round(float(1.0 / (1.0 + np.exp(-logit))), 4)


def window_logit(line: lines.Line, config: DuplicateConfig) -> float:
    """The windows' share of the score's logit: their mean similarity and (log) number."""
    return (
        config.weight_similarity * line.similarity
        + config.weight_log_windows * float(np.log(line.windows))
        + config.bias
    )


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
