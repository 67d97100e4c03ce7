"""Genres and tags read off the teachers' 100 tags."""

import numpy as np

from mirsearch.teacher import teacher_labels
from mirsearch.vocabulary import GENRES, TAG_KINDS, genre_scores, merged_tags, tag_name, top_tags

LABELS = teacher_labels()


def probabilities(**tags: float) -> np.ndarray:
    p = np.full(len(LABELS), 0.02, np.float32)
    for label, value in tags.items():
        p[LABELS.index(label.replace("__", ":").replace("_", " "))] = value
    return p


def test_every_genre_and_tag_kind_names_real_teacher_tags():
    assert 15 <= len(GENRES) <= 20
    assert all(t in LABELS for tags in GENRES.values() for t in tags)
    names = {tag_name(label) for label in LABELS}
    assert all(n in names for kind in TAG_KINDS.values() for n in kind)


def test_genre_is_the_genre_of_the_strongest_tag():
    p = probabilities(msd__rock=0.8, mtt__classical=0.3)
    scores = genre_scores(p, LABELS)
    assert np.isclose(scores.sum(), 1.0)
    assert list(GENRES)[int(scores.argmax())] == "rock"
    rock, classical = (list(GENRES).index(g) for g in ("rock", "classical"))
    assert scores[rock] / scores[classical] == np.float32(0.8) / np.float32(0.3)  # the best tag
    strings = genre_scores(probabilities(mtt__strings=0.9, msd__rock=0.4), LABELS)
    assert list(GENRES)[int(strings.argmax())] == "classical"
    windows = np.stack([p, probabilities(msd__jazz=0.9)])
    assert [list(GENRES)[i] for i in genre_scores(windows, LABELS).argmax(1)] == ["rock", "jazz"]


def test_tags_of_both_teachers_merge_under_one_name_and_come_best_first():
    p = probabilities(msd__rock=0.4, mtt__rock=0.7, mtt__piano=0.5, msd__80s=0.6)
    assert merged_tags(p, LABELS)["rock"] == np.float32(0.7)
    either_way = probabilities(msd__rock=0.7, mtt__rock=0.4)
    assert merged_tags(either_way, LABELS)["rock"] == np.float32(0.7)
    best = top_tags(p, LABELS, n=3)
    assert [t["tag"] for t in best] == ["rock", "80s", "piano"]
    assert [t["kind"] for t in best] == ["genre", "era", "instrument"]
    assert top_tags(np.zeros(0), [], n=3) == []


def test_tags_of_equal_score_come_in_the_order_of_their_names():
    p = probabilities(msd__jazz=0.5, mtt__piano=0.5, msd__80s=0.5, msd__blues=0.5)
    assert [t["tag"] for t in top_tags(p, LABELS, n=4)] == ["80s", "blues", "jazz", "piano"]
