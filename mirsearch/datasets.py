"""Labelled clips and unlabelled music for training and evaluation: manifests, splits, decoding."""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mirsearch.audio import load
from mirsearch.config import AudioConfig
from mirsearch.errors import MirsearchError
from mirsearch.files import AUDIO_EXTENSIONS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelledClip:
    path: Path
    label: str
    group: str  # clips of one group never sit on both sides of a split
    extra: dict = field(default_factory=dict)  # other manifest columns (soundfont, tempo_bpm, ...)


def read_dataset(data: Path) -> list[LabelledClip]:
    """Labelled clips from a folder per genre, or from a TSV manifest with path and class columns.

    The group is the manifest's `group` column, else the groove library file (`groove` column, the
    part before ':'), else the file's stem.
    """
    data = Path(data)
    manifest = data if data.is_file() else data / "manifest.tsv"
    if manifest.is_file():
        root = manifest.parent
        rows = _manifest_rows(manifest)
        return _distinct_labels(
            [
                LabelledClip(
                    path=root / row["path"],
                    label=row["class"].strip(),
                    group=row.get("group")
                    or (row.get("groove") or "").split(":")[0]
                    or Path(row["path"]).stem,
                    extra={k: v for k, v in row.items() if k not in ("path", "class")},
                )
                for row in rows
            ]
        )
    if not data.is_dir():
        raise MirsearchError(f"{data}: neither a manifest nor a folder of genre folders")
    clips = [
        LabelledClip(path=p, label=genre_dir.name, group=p.stem)
        for genre_dir in sorted(d for d in data.iterdir() if d.is_dir())
        for p in sorted(genre_dir.iterdir())
        if p.suffix.lower() in AUDIO_EXTENSIONS
    ]
    if not clips:
        raise MirsearchError(f"{data}: no audio files in genre sub-folders")
    return _distinct_labels(clips)


def _manifest_rows(manifest: Path) -> list[dict]:
    """The rows of a TSV manifest, each with a path and a class. Tab-separated text, no CSV
    quoting: a label `"Heavy` had opened a quote that took the next rows into it, and a model
    was trained with them gone and a genre named over three lines."""
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as f:  # a spreadsheet's BOM too
            reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            if not {"path", "class"} <= set(reader.fieldnames or ()):
                raise MirsearchError(f"{manifest}: a manifest needs 'path' and 'class' columns")
            rows = []
            for row in reader:
                empty = next((k for k in ("path", "class") if not (row[k] or "").strip()), None)
                if empty:
                    raise MirsearchError(f"{manifest}, line {reader.line_num}: no {empty}")
                if "\x00" in row["class"]:  # a genre no filter could ask for
                    raise MirsearchError(f"{manifest}, line {reader.line_num}: a NUL in the class")
                rows.append(row)
    except UnicodeDecodeError as exc:  # a spreadsheet's "Unicode text" (UTF-16), an audio file
        raise MirsearchError(
            f"{manifest}: not UTF-8 text (byte {exc.start:,}); save the manifest as UTF-8, "
            "tab-separated"
        ) from None
    if not rows:
        raise MirsearchError(f"{manifest}: no clips listed")
    return rows


def _distinct_labels(clips: list[LabelledClip]) -> list[LabelledClip]:
    """`clips`, once no two classes differ in case alone: the catalog lists and filters genres
    lower-cased, where `Rock` and `rock` would be one genre of a network trained on two."""
    by_folded: dict[str, set[str]] = {}
    for clip in clips:
        by_folded.setdefault(clip.label.lower(), set()).add(clip.label)
    alike = next((sorted(names) for names in by_folded.values() if len(names) > 1), None)
    if alike:
        raise MirsearchError(
            f"the classes {' and '.join(map(repr, alike))} differ in case alone, which the "
            "catalog does not tell apart: name them alike, or apart"
        )
    return clips


def decode_all(paths: list[Path], *, sample_rate: int) -> tuple[list[int], list[np.ndarray]]:
    """The files decoded in order, those that cannot be left out with a warning naming each
    (a corrupt file in a data set, as GTZAN's jazz.00054.wav, had stopped the whole run): the
    positions of the ones decoded, and their samples."""
    config = AudioConfig(sample_rate=sample_rate)
    kept, signals, failed = [], [], []
    for i, path in enumerate(tqdm(paths, desc="decoding", disable=None)):
        try:
            signals.append(load(path, config=config).samples)
        except MirsearchError as exc:
            failed.append(str(exc))
            continue
        kept.append(i)
    if failed:
        log.warning(
            "%d of %d files left out, as they cannot be decoded: %s",
            len(failed),
            len(paths),
            "; ".join(failed),
        )
    return kept, signals


def decode_clips(
    clips: list[LabelledClip], *, sample_rate: int
) -> tuple[list[LabelledClip], list[np.ndarray]]:
    """`decode_all` of the clips: those decoded, and their samples; MirsearchError if none is."""
    kept, signals = decode_all([c.path for c in clips], sample_rate=sample_rate)
    if clips and not kept:
        raise MirsearchError(f"none of the {len(clips)} clips can be decoded")
    return [clips[i] for i in kept], signals


def grouped_split(clips: list[LabelledClip], *, fraction: float, seed: int):
    """(train, validation) with whole groups on one side, about `fraction` of groups held out
    (one at least, and one at least kept to train on)."""
    groups = sorted({c.group for c in clips})
    if len(groups) < 2:
        raise MirsearchError(
            "a validation split needs clips of 2 groups (recordings) or more, one held out; "
            f"these are all of one ({groups[0] if groups else 'none'})"
        )
    rng = np.random.default_rng(seed)
    size = min(len(groups) - 1, max(1, round(fraction * len(groups))))
    held = set(rng.choice(groups, size=size, replace=False))
    return [c for c in clips if c.group not in held], [c for c in clips if c.group in held]


# Real music used, unlabelled, for the invariance term of the shipped model. The other packages of
# ../shared/audio stay unseen, so the evaluations can report figures on music the model never heard.
CONTRASTIVE_PACKAGES = ("wesnoth-1.16-music", "supertux-data", "xmoto-data", "scorched3d-data")


def contrastive_files(audio_dir: Path) -> list[Path]:
    """The files of ../shared/audio in CONTRASTIVE_PACKAGES (empty when the folder is absent)."""
    manifest = Path(audio_dir) / "manifest.tsv"
    if not manifest.is_file():
        return []
    with open(manifest, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [Path(audio_dir) / r["path"] for r in rows if r.get("package") in CONTRASTIVE_PACKAGES]
