"""Genre evaluation: grouped stratified k-fold CV and a held-out split, on the same folds:
a network trained on the labels (`cnn`), a head on the shipped network's frozen embedding
(`head`, heads.py) and the MFCC-statistics baseline (`baseline`)."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, precision_recall_fscore_support
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mirsearch.config import FeatureConfig, TrainConfig
from mirsearch.datasets import LabelledClip, decode_all, decode_clips, grouped_split
from mirsearch.embeddings import Embedder
from mirsearch.errors import MirsearchError
from mirsearch.features import mfcc_stats
from mirsearch.heads import embed_clips, fit_head
from mirsearch.heads import predict as head_predict
from mirsearch.trainer import Trainer
from mirsearch.training import confusion_figure

log = logging.getLogger(__name__)

METHODS = ("cnn", "head", "baseline")


def scores(targets: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    precision, recall, f1, _ = precision_recall_fscore_support(
        targets, predicted, average="macro", zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(targets, predicted)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
    }


def baseline_predict(train_x, train_y, test_x, *, sample_rate: int) -> np.ndarray:
    """MFCC statistics (20 × mean and std) → standardised logistic regression."""
    features = [mfcc_stats(x, sample_rate) for x in train_x]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=1.0))
    model.fit(np.array(features), train_y)
    return model.predict(np.array([mfcc_stats(x, sample_rate) for x in test_x]))


def _fit_and_predict(
    config: TrainConfig, labels, clips, signals, targets, train_idx, test_idx, unlabelled
) -> np.ndarray:
    """Train on train_idx (early stopping on an inner grouped split); predict test_idx."""
    inner = [clips[i] for i in train_idx]
    fit_part, val_part = grouped_split(inner, fraction=config.val_fraction, seed=config.seed)
    position = {id(c): i for c, i in zip(inner, train_idx, strict=True)}
    fit_idx = [position[id(c)] for c in fit_part]
    val_idx = [position[id(c)] for c in val_part]
    trainer = Trainer(config, labels=labels, feature_config=FeatureConfig())
    trainer.fit(
        [signals[i] for i in fit_idx],
        targets[fit_idx],
        [signals[i] for i in val_idx],
        targets[val_idx],
        unlabelled=unlabelled,
    )
    return trainer.predict([signals[i] for i in test_idx]).argmax(1)


def _summary(folds: list[dict], methods) -> dict:
    out = {}
    for method in methods:
        out[method] = {
            metric: {
                "mean": float(np.mean([f[method][metric] for f in folds])),
                "std": float(np.std([f[method][metric] for f in folds])),
            }
            for metric in ("accuracy", "precision", "recall", "f1")
        }
    return out


def evaluate(
    clips: list[LabelledClip],
    *,
    folds: int = 5,
    config: TrainConfig = TrainConfig(),
    unlabelled_paths: list[Path] = (),
    heldout: tuple[str, str] | None = None,
    out_dir: Path | None = None,
    methods: tuple[str, ...] = METHODS,
) -> dict:
    """Grouped stratified k-fold CV of `methods` (see METHODS) on the same folds.

    `heldout` = (manifest column, value): also train on the rows without that value and test on
    those with it (e.g. ("soundfont", "TimGM6mb.sf2"), the honest unseen-timbre split).
    `folds` 0 runs the held-out split alone (one network instead of folds + 1).
    """
    _check(clips, folds, heldout, methods, seed=config.seed)
    sr = FeatureConfig().sample_rate
    clips, signals = decode_clips(clips, sample_rate=sr)
    _check(clips, folds, heldout, methods, seed=config.seed)
    labels = sorted({c.label for c in clips})
    unlabelled = decode_all(list(unlabelled_paths), sample_rate=sr)[1] if "cnn" in methods else []
    targets = np.array([labels.index(c.label) for c in clips])
    groups = np.array([c.group for c in clips])
    fold_results, all_true, all_pred = [], [], []
    splits = _splits(clips, folds, seed=config.seed)
    embedded = embed_clips(Embedder(), signals) if "head" in methods else None

    def predictions(train_idx, test_idx, seed: int) -> dict[str, np.ndarray]:
        out = {}
        if "cnn" in methods:
            out["cnn"] = _fit_and_predict(
                replace(config, seed=seed),
                labels,
                clips,
                signals,
                targets,
                train_idx,
                test_idx,
                unlabelled,
            )
        if "head" in methods:
            head = fit_head(embedded[train_idx], targets[train_idx], len(labels))
            out["head"] = head_predict(head, embedded[test_idx])
        if "baseline" in methods:
            out["baseline"] = baseline_predict(
                [signals[i] for i in train_idx],
                targets[train_idx],
                [signals[i] for i in test_idx],
                sample_rate=sr,
            )
        return out

    shown = methods[0]  # the per-class figures and the confusion matrix describe this method
    for k, (train_idx, test_idx) in enumerate(splits):
        assert not set(groups[train_idx]) & set(groups[test_idx])
        predicted = predictions(train_idx, test_idx, config.seed + k)
        fold_results.append(
            {"fold": k + 1} | {m: scores(targets[test_idx], p) for m, p in predicted.items()}
        )
        all_true += list(targets[test_idx])
        all_pred += list(predicted[shown])
        log.info("fold %d: %s", k + 1, fold_results[-1])
    report = {"labels": labels, "folds": fold_results}
    if fold_results:
        report["cv"] = _summary(fold_results, methods)
    if heldout is not None:
        column, value = heldout
        test_idx = np.array([i for i, c in enumerate(clips) if c.extra.get(column) == value])
        train_idx = np.array([i for i, c in enumerate(clips) if c.extra.get(column) != value])
        predicted = predictions(train_idx, test_idx, config.seed)
        report["heldout"] = {"column": column, "value": value} | {
            m: scores(targets[test_idx], p) for m, p in predicted.items()
        }
        if not fold_results:
            all_true, all_pred = list(targets[test_idx]), list(predicted[shown])
    report["per_class"] = _per_class(np.array(all_true), np.array(all_pred), labels)
    if out_dir is not None:
        _write_report(report, np.array(all_true), np.array(all_pred), labels, Path(out_dir))
    return report


def _splits(clips: list[LabelledClip], folds: int, *, seed: int) -> list[tuple]:
    """(train, test) indices of each cross-validation fold: stratified by label, whole groups
    (recordings) on one side; none for 0 folds."""
    if not folds:
        return []
    labels = sorted({c.label for c in clips})
    targets = np.array([labels.index(c.label) for c in clips])
    groups = np.array([c.group for c in clips])
    folding = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(folding.split(np.zeros(len(clips)), targets, groups))


def _check(
    clips: list[LabelledClip],
    folds: int,
    heldout: tuple[str, str] | None,
    methods,
    *,
    seed: int,
) -> None:
    """MirsearchError for data or parameters the evaluation cannot run on: said before anything
    is decoded, and again for the clips that could be."""
    labels = sorted({c.label for c in clips})
    if len(labels) < 2:
        raise MirsearchError("evaluation needs at least two classes")
    if folds == 1:
        raise MirsearchError("cross-validation needs 2 folds or more (0: the held-out split alone)")
    if folds == 0 and heldout is None:
        raise MirsearchError("with no cross-validation folds, give a held-out split")
    n_groups = len({c.group for c in clips})
    if folds and n_groups < 2:
        raise MirsearchError(
            "cross-validation needs clips of 2 groups (recordings) or more; these are all of one"
        )
    if folds > n_groups:
        raise MirsearchError(
            f"{folds} folds need {folds} groups of clips (recordings) or more; these come from "
            f"{n_groups}: use --folds {n_groups} or fewer"
        )
    per_class = Counter(c.label for c in clips)
    fewest, n_fewest = min(per_class.items(), key=lambda item: item[1])
    if folds > n_fewest:
        raise MirsearchError(
            f"{folds} folds need {folds} clips of each class or more; {fewest!r} has {n_fewest}: "
            + (f"use --folds {n_fewest} or fewer" if n_fewest >= 2 else "give it more clips")
        )
    unknown = set(methods) - set(METHODS)
    if unknown or not methods:
        named = f"unknown methods {sorted(unknown)}" if unknown else "no method given"
        raise MirsearchError(f"{named}; use some of {', '.join(METHODS)}")
    if heldout is not None:
        _check_heldout(clips, *heldout, methods)
    _check_folds(clips, folds, methods, seed=seed)


def _check_folds(clips: list[LabelledClip], folds: int, methods, *, seed: int) -> None:
    """MirsearchError unless each fold trains on clips of 2 classes or more, and, for `cnn`,
    of 2 groups or more: its network holds a group out to stop early (_fit_and_predict). Both
    had been found after every clip was decoded: by scikit-learn's solver, as a traceback, and by
    the first fold's network."""
    n_groups = len({c.group for c in clips})
    for train, _ in _splits(clips, folds, seed=seed):
        classes = sorted({clips[i].label for i in train})
        if len(classes) < 2:
            raise MirsearchError(
                f"with {folds} folds, a fold trains on clips of one class ({classes[0]}) and "
                "every method needs two or more: give each class clips of 2 groups (recordings) "
                "or more"
            )
        trained = len({clips[i].group for i in train})
        if "cnn" in methods and trained < 2:
            raise MirsearchError(
                f"--methods cnn: with {folds} folds, a fold's network has clips of {trained} "
                "group (recording) to train on, and it needs 2 or more, as it holds one out to "
                "stop early: "
                + (f"use --folds {n_groups}" if n_groups >= 3 else "give clips of 3 groups or more")
            )


def _check_heldout(clips: list[LabelledClip], column: str, value: str, methods) -> None:
    """MirsearchError unless some clips have `column` = `value` and the others, trained on, hold
    two classes or more (and, for `cnn`, two groups: see _check_folds): said before anything is
    decoded or trained."""
    if not any(column in c.extra for c in clips):
        raise MirsearchError(f"the manifest has no column {column!r} to hold clips out by")
    rest = [c for c in clips if c.extra.get(column) != value]  # what the split trains on
    if len(rest) == len(clips):
        raise MirsearchError(f"no clip has {column} = {value!r}")
    trained = sorted({c.label for c in rest})
    if len(trained) < 2:
        raise MirsearchError(
            f"the clips without {column} = {value!r} hold {len(trained)} class"
            f"{'' if len(trained) == 1 else 'es'} ({', '.join(trained) or 'none'}): training "
            "needs two or more"
        )
    outside = {c.group for c in rest}
    if "cnn" in methods and len(outside) < 2:
        raise MirsearchError(
            f"--methods cnn: the clips without {column} = {value!r} are of {len(outside)} group "
            "(recording), and the held-out split's network needs 2 or more to train on, as it "
            "holds one out to stop early"
        )


def _per_class(true: np.ndarray, predicted: np.ndarray, labels: list[str]) -> dict:
    p, r, f, support = precision_recall_fscore_support(
        true, predicted, labels=range(len(labels)), zero_division=0
    )
    return {
        label: {
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": int(support[i]),
        }
        for i, label in enumerate(labels)
    }


def _write_report(report: dict, true, predicted, labels, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "genre_eval.json").write_text(json.dumps(report, indent=2) + "\n")
    confusion_figure(true, predicted, labels).savefig(out_dir / "genre_confusion.png", dpi=100)
