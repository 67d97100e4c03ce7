"""What `match` finds of the catalog in an upload's samples (Engine.match_candidates): the
readings it needs, as it plays first and further only where that leaves a doubt
(readings.py), each track at its best alignment over them, and a second catalog track beside
the first where another sound plays with it (residual.py)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mirsearch import audio, levels
from mirsearch.catalog import Catalog
from mirsearch.config import Settings
from mirsearch.duplicates import Reading, best_of, candidates, print_frames_per_s
from mirsearch.index import VectorIndex
from mirsearch.matcher import Matcher
from mirsearch.readings import read_as_needed, read_far, read_under_talk
from mirsearch.repeating import under_other_sound
from mirsearch.residual import busiest, rest_of
from mirsearch.scoring import Match

if TYPE_CHECKING:  # the reader of a network other than a CNN, loaded where there is one
    from mirsearch.embeddings import Embedder


@dataclass(frozen=True)
class UploadCheck:
    """One catalog's near-duplicate check of uploads: its window index, the reader of uploads
    (the model's matching branch), the catalog's prints and files, and the threshold a score
    confirms a track at."""

    reader: Matcher | Embedder
    index: VectorIndex
    catalog: Catalog
    settings: Settings
    threshold: float

    def candidates(self, samples: np.ndarray, *, every_hypothesis: bool = False) -> list[Match]:
        """The catalog tracks the signal's windows align with best, verified and scored (not
        thresholded).

        The signal is read as it plays first, at the other pitch hypotheses only when that
        reading leaves a doubt, and further in key and brought back from the speeds of sped-up
        and slowed copies only when none of those lists a track (readings.read_as_needed); or
        at all of them with `every_hypothesis` (what the threshold's calibration samples other
        music with). Each reading is its windows' vectors and its print, several hypotheses read
        in one batched pass of the matching branch (`reader`), and each track keeps its best
        alignment over them.
        """
        config = self.settings.duplicates
        upload, index, prints = _Upload(self, samples), self.index, self.catalog.prints
        if every_hypothesis:
            readings = upload.read(sorted(config.pitch_hypotheses_st))
            found = best_of(
                candidates(index, readings, prints, config=config),
                read_far(index, upload.read, upload.read_at, prints, config=config),
                read_under_talk(index, upload.read_repeating(), prints, config=config),
            )
        else:
            found = read_as_needed(
                index,
                upload.read,
                prints,
                threshold=self.threshold,
                versions=self.catalog.versions,
                read_at=upload.read_at,
                read_repeating=upload.read_repeating,
                config=config,
            )
        return best_of(found, self._beside(upload, found))

    def _beside(self, upload: _Upload, found: list[Match]) -> list[Match]:
        """The catalog tracks heard in the upload once the best track confirmed in it (`found`,
        best first) is taken out (residual.py): two catalog tracks mixed, the one under the
        other. Only where another sound owns some of the upload's print along it
        (config.rest_min_owned on the upload's print as it plays), its file can be read and
        something is left there; none otherwise."""
        config = self.settings.duplicates
        top = next((m for m in found if m.score >= self.threshold), None)
        if top is None or not config.second_track:
            return []
        track_print = self.catalog.prints([top.track_id]).get(top.track_id)
        if track_print is None:  # pruned meanwhile
            return []
        owned, owned_at_s = busiest(
            upload.print_as_played(),
            track_print,
            top,
            frames_per_s=print_frames_per_s(self.index),
        )
        if owned < config.rest_min_owned:
            return []
        row = self.catalog.get(top.track_id)
        if row is None:
            return []
        rest = rest_of(
            upload.samples,
            top,
            Path(row.path),
            config=self.settings.audio,
            min_share=config.rest_min_share,
            probe_at_s=owned_at_s,
        )
        if rest is None:
            return []
        exclude = frozenset({top.track_id})
        return candidates(
            self.index,
            upload.read([0.0], rest),
            self.catalog.prints,
            config=config,
            exclude=exclude,
        )


@dataclass
class _Upload:
    """An upload's samples as `check` reads them (the readings of readings.py), keeping its
    print as it plays from the first reading that makes it."""

    check: UploadCheck
    samples: np.ndarray
    as_played: np.ndarray | None = None  # the print of the samples read as they play

    def read(self, semitones: Sequence[float], signal: np.ndarray | None = None) -> list[Reading]:
        """`signal` (the upload's samples by default) read at these pitch hypotheses: each its
        windows that are sound (`_heard`), their starts and its print."""
        signal = self.samples if signal is None else signal
        hypotheses = self.check.reader.matching(
            signal,
            hop_s=self.check.settings.embedding.query_hop_s,
            frequency_scales=[2 ** (st / 12) for st in semitones],
        )
        heard = self._heard(signal, hypotheses[0].offsets_s)
        if signal is self.samples and 0.0 in semitones:
            self.as_played = hypotheses[list(semitones).index(0.0)].fingerprint
        return [Reading(h.vectors[heard], h.offsets_s[heard], h.fingerprint) for h in hypotheses]

    def read_at(self, speed: float) -> tuple[list[Reading], float]:
        """The upload brought back from `speed` (played 1 / speed times as fast), read as it
        then plays and at the pitch it played at (a copy stretched in time alone), and the speed
        exactly undone."""
        rate = self.check.settings.audio.sample_rate
        brought_back, played = audio.played_at(self.samples, 1 / speed, sample_rate=rate)
        return self.read([0.0, 12 * math.log2(played)], brought_back), 1 / played

    def read_repeating(self) -> Reading:
        """The upload's repeating part, the music under other sound (repeating.py)."""
        h = under_other_sound(
            self.check.reader,
            self.samples,
            hop_s=self.check.settings.embedding.query_hop_s,
            config=self.check.settings.embedding,
        )
        heard = self._heard(self.samples, h.offsets_s)
        return Reading(h.vectors[heard], h.offsets_s[heard], h.fingerprint, h.weights)

    def print_as_played(self) -> np.ndarray:
        """The upload's print as it plays (read so now, where no reading has been)."""
        if self.as_played is None:  # no 0 among the pitches read
            self.read([0.0])
        return self.as_played

    def _heard(self, signal: np.ndarray, offsets_s: np.ndarray) -> np.ndarray:
        """Which windows starting at `offsets_s` are sound, not a pause (all, where none is): a
        pause's windows had lined up with the pauses of catalog tracks, and 15 s of a catalog
        track before or after 20 s of digital silence went unmatched."""
        settings = self.check.settings
        sounding = levels.sounding_windows(
            signal,
            offsets_s,
            settings.embedding.window_s,
            sample_rate=settings.audio.sample_rate,
            silence_dbfs=settings.audio.silence_dbfs,
        )
        return levels.heard_windows(sounding)
