"""Genres and tags for real music, read off the teachers' tags (see docs/model.md).

The shipped network predicts the 100 tags of the two musicnn taggers: 50 Last.fm tags of the
Million Song Dataset ("msd:rock", "msd:Hip-Hop", "msd:80s"...) and 50 MagnaTagATune tags
("mtt:classical", "mtt:piano", "mtt:no vocals"...). A genre is a set of those tags; its score is
the highest probability among them, and the genre probabilities are the scores normalised to sum
to one. Tags are shown under their plain name, the higher of two teachers' scores when both have
it ("rock" from msd:rock and mtt:rock), with the kind of thing each describes.
"""

from __future__ import annotations

import numpy as np

GENRES: dict[str, tuple[str, ...]] = {
    "rock": (
        "msd:rock",
        "msd:alternative",
        "msd:indie",
        "msd:alternative rock",
        "msd:classic rock",
        "msd:indie rock",
        "msd:hard rock",
        "msd:Progressive rock",
        "mtt:rock",
    ),
    "pop": ("msd:pop", "msd:indie pop", "mtt:pop"),
    "electronic": ("msd:electronic", "msd:electronica", "msd:electro", "mtt:electronic"),
    "dance": ("msd:dance", "msd:House", "mtt:techno", "mtt:dance"),
    "hip-hop": ("msd:Hip-Hop",),
    "jazz": ("msd:jazz",),
    "blues": ("msd:blues",),
    "country": ("msd:country", "mtt:country"),
    "folk": ("msd:folk", "msd:acoustic"),
    "soul/r&b": ("msd:soul", "msd:rnb"),
    "funk": ("msd:funk",),
    "metal": ("msd:metal", "msd:heavy metal", "mtt:metal"),
    "punk": ("msd:punk",),
    "classical": (
        "mtt:classical",
        "mtt:classic",
        "mtt:strings",
        "mtt:violin",
        "mtt:cello",
        "mtt:harpsichord",
        "mtt:harp",
    ),
    "opera/choral": ("mtt:opera", "mtt:choir", "mtt:choral"),
    "ambient": ("msd:ambient", "msd:chillout", "msd:chill", "mtt:ambient"),
    "new age": ("mtt:new age", "msd:easy listening"),
    "world": ("mtt:indian", "mtt:sitar"),
}

TAG_KINDS: dict[str, tuple[str, ...]] = {
    "mood": (
        "beautiful",
        "Mellow",
        "chill",
        "sad",
        "happy",
        "sexy",
        "catchy",
        "party",
        "soft",
        "loud",
        "quiet",
        "slow",
        "fast",
        "weird",
        "experimental",
        "chillout",
        "easy listening",
    ),
    "instrument": (
        "guitar",
        "piano",
        "drums",
        "strings",
        "violin",
        "synth",
        "flute",
        "harp",
        "cello",
        "sitar",
        "harpsichord",
        "beat",
        "beats",
        "instrumental",
        "acoustic",
        "solo",
    ),
    "vocals": (
        "female vocalists",
        "male vocalists",
        "female vocalist",
        "vocal",
        "vocals",
        "no vocals",
        "no vocal",
        "no voice",
        "singing",
        "voice",
        "female",
        "male",
        "woman",
        "man",
        "male vocal",
        "female vocal",
        "male voice",
        "female voice",
        "choir",
        "choral",
        "opera",
    ),
    "era": ("00s", "90s", "80s", "70s", "60s", "oldies"),
}


def tag_name(label: str) -> str:
    """'msd:Hip-Hop' → 'Hip-Hop' (the teacher's prefix dropped)."""
    return label.split(":", 1)[-1]


def tag_kind(name: str) -> str:
    return next((kind for kind, names in TAG_KINDS.items() if name in names), "genre")


def genre_scores(tag_probabilities: np.ndarray, labels: list[str]) -> np.ndarray:
    """(..., n_tags) tag probabilities → (..., n_genres) genre probabilities (sum to one)."""
    column = {label: i for i, label in enumerate(labels)}
    scores = np.stack(
        [
            tag_probabilities[..., [column[t] for t in tags if t in column]].max(axis=-1)
            for tags in GENRES.values()
        ],
        axis=-1,
    )
    return scores / (scores.sum(axis=-1, keepdims=True) + 1e-12)


def merged_tags(tag_probabilities: np.ndarray, labels: list[str]) -> dict[str, float]:
    """(n_tags,) probabilities → {plain tag name: best score}, one entry per name."""
    merged: dict[str, float] = {}
    for label, p in zip(labels, map(float, tag_probabilities), strict=True):
        name = tag_name(label)
        merged[name] = max(merged.get(name, 0.0), p)
    return merged


def top_tags(tag_probabilities: np.ndarray, labels: list[str], *, n: int = 10) -> list[dict]:
    """The n best tags, best first: [{"tag", "score", "kind"}, ...]."""
    merged = merged_tags(tag_probabilities, labels)
    best = sorted(merged.items(), key=lambda item: (-item[1], item[0]))[:n]
    return [{"tag": t, "score": round(p, 4), "kind": tag_kind(t)} for t, p in best]
