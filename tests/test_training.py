"""Training runs, datasets and evaluation: folders, manifests, splits, baseline, refusals."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import SR, TINY_CONFIG, synthetic_classes, tone

from mirsearch.config import TrainConfig
from mirsearch.datasets import decode_all, grouped_split, read_dataset
from mirsearch.errors import MirsearchError
from mirsearch.evaluation import _summary, baseline_predict, evaluate, scores


def test_read_dataset_from_genre_folders(tmp_path, write_audio):
    for genre in ("jazz", "rock"):
        (tmp_path / genre).mkdir()
        for i in range(2):
            write_audio(f"{genre}/{genre}{i}.wav", tone(300.0 + i, 1.0))
    (tmp_path / "jazz" / "sources.txt").write_text("where the clips came from")
    clips = read_dataset(tmp_path)
    assert sorted({c.label for c in clips}) == ["jazz", "rock"]
    assert len({c.group for c in clips}) == 4 and len(clips) == 4  # the notes are no clip


def test_read_dataset_groups_the_genre_set_by_groove_library(shared_genres):
    clips = read_dataset(shared_genres / "manifest.tsv")
    assert len(clips) == 450
    assert clips[0].group == "stdlib/folkrock" and clips[0].extra["soundfont"]


def test_grouped_split_keeps_groups_whole():
    clips = read_dataset_like(40)
    train, val = grouped_split(clips, fraction=0.25, seed=3)
    assert not {c.group for c in train} & {c.group for c in val}
    assert len(train) + len(val) == 40 and val


def read_dataset_like(n: int):
    from pathlib import Path

    from mirsearch.datasets import LabelledClip

    return [LabelledClip(Path(f"{i}.wav"), f"c{i % 2}", f"g{i // 4}") for i in range(n)]


def test_baseline_beats_chance_on_separable_classes():
    train_x, train_y = synthetic_classes(8, seed=4)
    test_x, test_y = synthetic_classes(4, seed=5)
    predicted = baseline_predict(train_x, train_y, test_x, sample_rate=SR)
    assert (predicted == test_y).mean() > 0.8


def held_out_manifest(write_audio, per_class: int):
    """Tones, noise and clicks, each clip its own group, every fourth with soundfont 'held' (the
    rest 'train'), written where `write_audio` writes: their manifest read, and the class names
    in label order."""
    signals, labels = synthetic_classes(per_class, seed=3)
    names = ["tone", "noise", "clicks"]
    rows = ["path\tclass\tgroup\tsoundfont"]
    for i, (x, y) in enumerate(zip(signals, labels, strict=True)):
        manifest = write_audio(f"clip{i}.wav", x).with_name("manifest.tsv")
        rows.append(f"clip{i}.wav\t{names[y]}\tg{i}\t{'held' if i % 4 == 0 else 'train'}")
    manifest.write_text("\n".join(rows) + "\n")
    return read_dataset(manifest), names


def test_evaluate_the_heldout_split_alone(tmp_path, write_audio):
    """--folds 0: one network trained on the other rows, scored beside the baseline."""
    clips, names = held_out_manifest(write_audio, 8)
    report = evaluate(
        clips, folds=0, config=TINY_CONFIG, heldout=("soundfont", "held"), out_dir=tmp_path / "out"
    )
    assert "cv" not in report and report["folds"] == []
    assert report["heldout"]["cnn"]["accuracy"] > 0.8
    held = [i for i, c in enumerate(clips) if c.extra["soundfont"] == "held"]
    rest = [i for i, c in enumerate(clips) if c.extra["soundfont"] != "held"]
    targets = np.array([names.index(c.label) for c in clips])
    _, decoded = decode_all([c.path for c in clips], sample_rate=SR)
    # the baseline's figure is the baseline trained on the other rows, scored on the held ones
    baseline = baseline_predict(
        [decoded[i] for i in rest], targets[rest], [decoded[i] for i in held], sample_rate=SR
    )
    accuracy = float((baseline == targets[held]).mean())
    assert report["heldout"]["baseline"]["accuracy"] == pytest.approx(accuracy)
    assert accuracy > 0.8  # tones, noise and clicks are easy for MFCCs
    assert sum(c["support"] for c in report["per_class"].values()) == 6
    assert (tmp_path / "out" / "genre_confusion.png").stat().st_size > 0
    with pytest.raises(MirsearchError, match="held-out split"):
        evaluate(clips, folds=0, config=TINY_CONFIG)
    with pytest.raises(MirsearchError, match="2 folds or more"):
        evaluate(clips, folds=1, config=TINY_CONFIG)


def test_the_held_out_rows_are_never_trained_on_and_the_folds_use_every_clip_once(
    tmp_path, write_audio, monkeypatch
):
    """What each method is trained and scored on, read from a stand-in baseline: the held-out
    split trains on the other rows only (training on all had scored a method on clips it had
    seen, and looked better than it is), and each fold's clips are split between the two."""
    clips, _ = held_out_manifest(write_audio, 4)
    seen = []

    def baseline(train_x, train_y, test_x, *, sample_rate):
        seen.append((len(train_x), len(test_x)))
        return np.zeros(len(test_x), dtype=np.int64)

    monkeypatch.setattr("mirsearch.evaluation.baseline_predict", baseline)
    evaluate(clips, folds=2, methods=("baseline",), heldout=("soundfont", "held"))
    held = sum(c.extra["soundfont"] == "held" for c in clips)
    assert seen[-1] == (len(clips) - held, held)
    assert [train + test for train, test in seen[:-1]] == [len(clips)] * 2


def test_scores_are_macro_averaged_and_folds_summarised_with_their_spread():
    """A class never predicted counts as much as one always right (macro), so a model that names
    one genre for all is not flattered by that genre's share of the clips."""
    figures = scores(np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0]))
    assert figures["accuracy"] == 0.75 and figures["recall"] == 0.5
    assert figures["precision"] == pytest.approx(0.375)
    folds = [{"baseline": {"accuracy": a, "precision": a, "recall": a, "f1": a}} for a in (0.5, 1)]
    assert _summary(folds, ("baseline",))["baseline"]["accuracy"] == {"mean": 0.75, "std": 0.25}


def test_files_that_cannot_be_decoded_are_left_out_before_the_split(tmp_path, write_audio, caplog):
    """The validation split was drawn before decoding: a missing file held out alone stopped
    the run ("none of the 1 clips can be decoded", as the seed fell), and a genre none of whose
    files decodes stayed among the network's outputs, given a share of every answer."""
    from mirsearch.datasets import LabelledClip
    from mirsearch.training import train

    signals, labels = synthetic_classes(4, seed=3)
    names = ["tone", "noise", "clicks"]
    clips = [
        LabelledClip(write_audio(f"clip{i}.wav", x), names[y], f"g{i}")
        for i, (x, y) in enumerate(zip(signals, labels, strict=True))
    ]
    missing = [LabelledClip(tmp_path / f"gone{i}.wav", "blues", f"gone{i}") for i in range(2)]
    for seed in range(2):
        config = dataclasses.replace(TINY_CONFIG, epochs=1, steps_per_epoch=2, seed=seed)
        result = train(clips + missing, config, out=tmp_path / "model.pt")
        assert result.labels == sorted(set(names)), seed
    assert "no file of ['blues'] can be decoded" in caplog.text


def test_data_a_network_or_its_folds_cannot_learn_from_is_refused_before_decoding(tmp_path):
    """One genre (nothing to tell apart: it had trained to 'accuracy 1.000'), more folds than
    groups of clips (scikit-learn's ValueError had come out as a traceback)."""
    from mirsearch.datasets import LabelledClip
    from mirsearch.training import train

    nowhere = tmp_path / "never-decoded.wav"
    one_genre = [LabelledClip(nowhere, "rock", f"g{i}") for i in range(4)]
    with pytest.raises(MirsearchError, match="at least two classes"):
        train(one_genre, TrainConfig(epochs=1))
    four_groups = [LabelledClip(nowhere, label, f"g{i}") for i, label in enumerate("abab")]
    with pytest.raises(MirsearchError, match="use --folds 4 or fewer"):
        evaluate(four_groups, folds=5)


@pytest.mark.parametrize("row", ["clip1.wav", "clip1.wav\t", "clip1.wav\t  ", "\trock"])
def test_a_manifest_row_without_a_path_or_class_is_refused_by_its_line(tmp_path, row):
    """A row without a class had stopped train and evaluate with a TypeError (None among the
    labels); an empty one became a genre named ''."""
    manifest = tmp_path / "manifest.tsv"
    manifest.write_text(f"path\tclass\nclip0.wav\tjazz\n{row}\n")
    with pytest.raises(MirsearchError, match=r"manifest.tsv, line 3: no (class|path)"):
        read_dataset(manifest)
    manifest.write_text("path\tclass\n")
    with pytest.raises(MirsearchError, match="no clips listed"):
        read_dataset(manifest)


def test_folds_a_class_cannot_fill_or_an_empty_held_out_split_are_refused_before_decoding(
    tmp_path,
):
    """scikit-learn's ValueErrors had come out as tracebacks (a class with fewer clips than
    folds; a held-out split that leaves one class to train on), and a held-out value no clip
    has was said only after the whole cross-validation."""
    from mirsearch.datasets import LabelledClip

    nowhere = tmp_path / "never-decoded.wav"
    clips = [
        LabelledClip(nowhere, label, f"g{i}", {"sf": sf})
        for i, (label, sf) in enumerate(
            [("rock", "a"), ("rock", "a"), ("rock", "b"), ("jazz", "b"), ("jazz", "a")]
        )
    ]
    with pytest.raises(MirsearchError, match="'jazz' has 2: use --folds 2 or fewer"):
        evaluate(clips, folds=3)
    with pytest.raises(MirsearchError, match="'jazz' has 1: give it more clips"):
        evaluate(clips[:4], folds=2)
    with pytest.raises(MirsearchError, match="no clip has sf = 'zzz'"):
        evaluate(clips, folds=2, heldout=("sf", "zzz"))
    with pytest.raises(MirsearchError, match="no column 'nocol'"):
        evaluate(clips, folds=2, heldout=("nocol", "a"))
    with pytest.raises(MirsearchError, match=r"without sf = 'b' hold 1 class \(rock\)"):
        evaluate(clips[:4], folds=0, heldout=("sf", "b"))
    with pytest.raises(MirsearchError, match="no method given"):
        evaluate(clips, folds=2, methods=())


def test_a_manifest_saved_with_a_byte_order_mark_is_read(tmp_path):
    """As a spreadsheet saves UTF-8: its columns had not been found."""
    (tmp_path / "manifest.tsv").write_bytes("\ufeffpath\tclass\nclip0.wav\tjazz\n".encode())
    assert [c.label for c in read_dataset(tmp_path / "manifest.tsv")] == ["jazz"]


def test_a_manifest_is_tab_separated_text_read_as_it_is(tmp_path):
    """A quote in a label had opened CSV quoting: `"Heavy` took the rows after it into one
    genre named over three lines, and the model trained without them, exit 0."""
    manifest = tmp_path / "manifest.tsv"
    manifest.write_text('path\tclass\na.wav\t"Heavy\nb.wav\trock \n"Live" at Wembley.wav\tjazz\n')
    clips = read_dataset(manifest)
    assert [(c.path.name, c.label) for c in clips] == [
        ("a.wav", '"Heavy'),
        ("b.wav", "rock"),  # the space a spreadsheet's cell kept is no part of the genre
        ('"Live" at Wembley.wav', "jazz"),
    ]


@pytest.mark.parametrize(
    ("text", "told"),
    [
        ("path\tclass\na.wav\tjazz\n".encode("utf-16"), r"not UTF-8 text \(byte 0\)"),
        (b"path\tclass\na.wav\tjazz\nb.wav\tJazz\n", "'Jazz' and 'jazz' differ in case"),
        (b"path\tclass\na.wav\trock\x00\n", "line 2: a NUL in the class"),
    ],
)
def test_a_manifest_not_utf_8_or_with_labels_the_catalog_cannot_keep_apart_is_refused(
    tmp_path, text, told
):
    """A UTF-16 manifest (a spreadsheet's "Unicode text") had been a 38-line traceback; `Rock`
    and `rock` trained as two genres the catalog, lower-casing them, lists as one; a NUL made
    a genre no filter can ask for."""
    (tmp_path / "manifest.tsv").write_bytes(text)
    with pytest.raises(MirsearchError, match=told):
        read_dataset(tmp_path / "manifest.tsv")


def test_unlabelled_music_whose_manifest_names_no_package_is_its_files(tmp_path):
    """--unlabelled on a folder with a manifest of another kind (../shared/genres) had raised
    KeyError: 'package'."""
    from mirsearch.datasets import contrastive_files

    (tmp_path / "manifest.tsv").write_text("path\tclass\nclip0.wav\tjazz\n")
    assert contrastive_files(tmp_path) == []


def test_clips_of_one_group_are_refused_for_a_validation_split_or_folds(tmp_path):
    """The split had held out the only group and left nothing to train on (ValueError: high <=
    0); evaluate had advised --folds 1, which it refuses."""
    from mirsearch.datasets import LabelledClip
    from mirsearch.training import train

    nowhere = tmp_path / "never-decoded.wav"
    one_group = [LabelledClip(nowhere, label, "g") for label in "abab"]
    with pytest.raises(MirsearchError, match="2 groups .* these are all of one \\(g\\)"):
        train(one_group, TrainConfig(epochs=1))
    with pytest.raises(MirsearchError, match="cross-validation needs clips of 2 groups"):
        evaluate(one_group, folds=2)
    two_groups = [LabelledClip(nowhere, label, f"g{i % 2}") for i, label in enumerate("abab")]
    train_part, held = grouped_split(two_groups, fraction=0.9, seed=0)
    assert len({c.group for c in train_part}) == len({c.group for c in held}) == 1


def test_a_clip_that_cannot_be_decoded_is_left_out_with_a_warning(tmp_path, write_audio, caplog):
    """A corrupt file in a data set (GTZAN's jazz.00054.wav) had stopped the whole run, after
    the decoding of the others."""
    from mirsearch.datasets import decode_clips

    for genre in ("jazz", "rock"):
        (tmp_path / genre).mkdir()
        write_audio(f"{genre}/{genre}0.wav", tone(300.0, 1.0))
    (tmp_path / "jazz" / "jazz1.wav").write_text("liner notes, not audio\n" * 20)
    clips, signals = decode_clips(read_dataset(tmp_path), sample_rate=SR)
    assert [c.path.name for c in clips] == ["jazz0.wav", "rock0.wav"] and len(signals) == 2
    assert "1 of 3 files left out" in caplog.text and "jazz1.wav" in caplog.text
    with pytest.raises(MirsearchError, match="none of the 1 clips can be decoded"):
        decode_clips(
            [c for c in read_dataset(tmp_path) if c.path.name == "jazz1.wav"], sample_rate=SR
        )
