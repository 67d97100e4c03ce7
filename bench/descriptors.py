"""Tempo and key as `index` estimates them, against the clips of ../shared/genres, whose tempo
and key are known by construction (each rendered from a MIDI groove at a tempo and in a key).

Per clip, as `features.describe` reads it (the central EXCERPT_S): the tempo is right within
4 %, or at half or double that; the key is right, its relative major or minor (the same
notes), or on the right tonic in the other mode. Figures overall, for the keys in major and in
minor, and per genre, printed, and written as JSON with --out.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import Counter
from pathlib import Path

from mirsearch import audio, features

REPO = Path(__file__).resolve().parent.parent
GENRES = REPO.parent / "shared" / "genres"
TEMPO_TOLERANCE = 0.04
# the manifest's flats as features.NOTE_NAMES names them
SHARPS = {"Db": "C#", "Eb": "D#", "Gb": "F#", "Ab": "G#", "Bb": "A#"}


def relative(key: str) -> str:
    """The relative minor of a major key, the relative major of a minor one."""
    tonic, mode = key.split()
    at = features.NOTE_NAMES.index(tonic)
    if mode == "major":
        return f"{features.NOTE_NAMES[(at + 9) % 12]} minor"
    return f"{features.NOTE_NAMES[(at + 3) % 12]} major"


def judged(row: dict, tempo_bpm: float, key: str) -> dict[str, bool]:
    """What one clip's estimates got right, against its manifest row."""
    true_bpm = float(row["tempo_bpm"])
    tonic, mode = row["key"].split()
    truth = f"{SHARPS.get(tonic, tonic)} {mode}"

    def near(factor: float) -> bool:
        return abs(tempo_bpm - true_bpm * factor) <= TEMPO_TOLERANCE * true_bpm * factor

    return {
        "tempo": near(1.0),
        "tempo_or_octave": near(0.5) or near(1.0) or near(2.0),
        "key": key == truth,
        "key_or_relative": key in (truth, relative(truth)),
        "tonic": key.split()[0] == truth.split()[0],
    }


def measure(folder: Path) -> dict:
    with open(folder / "manifest.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    totals, by_genre, counts = Counter(), {}, Counter()
    keys_by_mode, modes = Counter(), Counter()
    for row in rows:
        decoded = audio.load(folder / row["path"])
        described = features.describe(decoded.samples, decoded.sample_rate)
        right = judged(row, described.tempo_bpm, described.key)
        totals.update(right)
        by_genre.setdefault(row["class"], Counter()).update(right)
        counts[row["class"]] += 1
        mode = row["key"].split()[1]
        keys_by_mode[mode] += right["key"]
        modes[mode] += 1
    share = {name: round(100 * totals[name] / len(rows), 1) for name in judged_names()}
    genres = {
        genre: {name: round(100 * right[name] / counts[genre], 1) for name in judged_names()}
        for genre, right in sorted(by_genre.items())
    }
    by_mode = {mode: round(100 * keys_by_mode[mode] / n, 1) for mode, n in sorted(modes.items())}
    return {
        "clips": len(rows),
        "percent_right": share,
        "key_percent_right_by_mode": by_mode,
        "by_genre": genres,
    }


def judged_names() -> tuple[str, ...]:
    return ("tempo", "tempo_or_octave", "key", "key_or_relative", "tonic")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, nargs="?", default=GENRES)
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    figures = measure(args.folder)
    print(f"{figures['clips']} clips, % right: {figures['percent_right']}")
    print(f"  key, % right by mode: {figures['key_percent_right_by_mode']}")
    for genre, share in figures["by_genre"].items():
        print(f"  {genre:12s} {share}")
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
