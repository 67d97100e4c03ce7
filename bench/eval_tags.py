"""The student against its teachers, and genres against the manifest's styles, on real music.

For every track of ../shared/audio (teacher outputs from the distillation cache, computed there
when missing):
- tags: on the packages the student never trained on, the macro ROC-AUC of the student's tag
  scores on 3 s windows against the teachers' tags on the same 3 s (positives: teacher
  probability ≥ 0.5 or among its top 3 for that window), and how often the top genre of a whole
  track is the same for both;
- styles: for every track with a `style` in the manifest, whether the student's genre and top
  tags fit it (orchestral → classical/strings/instrumental, electronic → electronic/ambient/
  techno, rock → rock, blues → blues/jazz, chiptune → electronic), the teachers' beside it.
Prints a JSON object and writes it to bench/tags.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from mirsearch.audio import load
from mirsearch.config import AudioConfig
from mirsearch.datasets import CONTRASTIVE_PACKAGES
from mirsearch.embeddings import Embedder
from mirsearch.teaching import PATCH_HOP_S, teach
from mirsearch.vocabulary import GENRES, genre_scores, merged_tags

OUT = Path(__file__).resolve().parent / "tags.json"
CACHE = Path("var/teacher_cache")
# A style is satisfied by the top genre, or by one of the three best tags.
STYLES = {
    "orchestral": (
        {"classical", "opera/choral", "new age"},
        {"classical", "strings", "violin", "cello", "harp", "instrumental", "choir", "classic"},
    ),
    "electronic": (
        {"electronic", "ambient", "dance"},
        {"electronic", "ambient", "techno", "electronica", "electro", "synth"},
    ),
    "rock": ({"rock", "metal", "punk"}, {"rock", "hard rock", "alternative", "indie rock"}),
    "blues": ({"blues", "jazz"}, {"blues", "jazz"}),
    "chiptune": ({"electronic", "dance"}, {"electronic", "techno", "electro", "synth", "dance"}),
}


def fits(style: str, genre: str, tags: dict[str, float]) -> bool:
    genres, names = STYLES[style]
    top = sorted(tags, key=lambda t: -tags[t])[:3]
    return genre in genres or bool(set(top) & names)


def student_windows(embedder: Embedder, samples: np.ndarray, n: int) -> np.ndarray:
    """(n, n_tags) the student's tags on the teachers' 3 s patches (same starts)."""
    model = embedder.model
    with torch.inference_mode():
        mel = model.front_end(torch.from_numpy(samples))
        z, _ = model.tag_windows(mel, window_s=3.0, hop_s=PATCH_HOP_S)
        tags = torch.sigmoid(model.tag_head(z)).numpy()
    return tags[:n]


def macro_auc(teacher: np.ndarray, student: np.ndarray) -> tuple[float, int]:
    top3 = np.zeros_like(teacher, dtype=bool)
    np.put_along_axis(top3, np.argsort(-teacher, axis=1)[:, :3], True, axis=1)
    positive = (teacher >= 0.5) | top3
    aucs = [
        roc_auc_score(positive[:, j], student[:, j])
        for j in range(teacher.shape[1])
        if 0 < positive[:, j].sum() < len(positive)
    ]
    return float(np.mean(aucs)), len(aucs)


def run(audio_dir: Path) -> dict:
    with open(audio_dir / "manifest.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    embedder = Embedder()
    labels = embedder.tag_labels
    names = list(GENRES)
    teacher_w, student_w, tracks = [], [], []
    for row in rows:
        path = audio_dir / row["path"]
        taught = teach(path, CACHE, feature_config=embedder.feature_config)
        samples = load(path, config=AudioConfig(sample_rate=embedder.sample_rate)).samples
        analysis = embedder.analyse(samples)
        teacher_tags = taught.tags.mean(axis=0)
        student_tags = analysis.tag_probabilities
        heard = row["package"] in CONTRASTIVE_PACKAGES
        if not heard:
            windows = student_windows(embedder, samples, len(taught.tags))
            teacher_w.append(taught.tags[: len(windows)])
            student_w.append(windows)
        tracks.append(
            {
                "path": row["path"],
                "package": row["package"],
                "style": row["style"],
                "heard_in_training": heard,
                "student_genre": names[int(np.argmax(analysis.probabilities))],
                "teacher_genre": names[int(np.argmax(genre_scores(teacher_tags, labels)))],
                "student_tags": merged_tags(student_tags, labels),
                "teacher_tags": merged_tags(teacher_tags, labels),
            }
        )
    auc, n_tags = macro_auc(np.concatenate(teacher_w), np.concatenate(student_w))
    unseen = [t for t in tracks if not t["heard_in_training"]]
    styled = [t for t in tracks if t["style"]]
    for t in styled:
        t["student_fits"] = fits(t["style"], t["student_genre"], t["student_tags"])
        t["teacher_fits"] = fits(t["style"], t["teacher_genre"], t["teacher_tags"])
    for t in tracks:
        for who in ("student", "teacher"):
            tags = t.pop(f"{who}_tags")
            t[f"{who}_top_tags"] = sorted(tags, key=lambda name: -tags[name])[:5]
    return {
        "date": time.strftime("%Y-%m-%d"),
        "model_sha256": embedder.card.sha256,
        "unseen_packages": sorted({t["package"] for t in unseen}),
        "student_vs_teacher": {
            "macro_roc_auc": round(auc, 4),
            "tags_scored": n_tags,
            "windows": int(sum(len(w) for w in student_w)),
            "same_top_genre": round(
                float(np.mean([t["student_genre"] == t["teacher_genre"] for t in unseen])), 4
            ),
            "tracks": len(unseen),
        },
        "styles": {
            "student": sum(t["student_fits"] for t in styled),
            "teacher": sum(t["teacher_fits"] for t in styled),
            "tracks": len(styled),
        },
        "tracks": tracks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio_dir", type=Path)
    args = parser.parse_args()
    if not (args.audio_dir / "manifest.tsv").exists():
        sys.exit(f"{args.audio_dir}/manifest.tsv not found: this evaluation needs ../shared/audio")
    result = run(args.audio_dir)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    summary = {k: v for k, v in result.items() if k != "tracks"}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
