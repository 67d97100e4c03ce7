"""Teaching: the teachers' outputs are cached per file and per setting."""

import numpy as np
import pytest
from conftest import SR, tone

from mirsearch import teaching
from mirsearch.config import FeatureConfig
from mirsearch.errors import MirsearchError
from mirsearch.teaching import default_training_files, music_files, teach

FEATURES = FeatureConfig()


def test_teachers_run_once_per_file_and_setting(tmp_path, write_audio, monkeypatch):
    calls = []

    def fake_tags(samples, *, hop_s):
        calls.append(hop_s)
        n = int((samples.size / SR - 3.0) // hop_s) + 1
        return np.full((n, 100), 0.5, np.float32), np.zeros((n, 400), np.float32)

    monkeypatch.setattr(teaching, "tag_signal", fake_tags)
    path = write_audio("song.wav", tone(440, 40.0))
    first = teach(path, tmp_path / "cache", feature_config=FEATURES, hop_s=3.0)
    again = teach(path, tmp_path / "cache", feature_config=FEATURES, hop_s=3.0)
    assert calls == [3.0] and len(first.tags) == 13 and np.array_equal(first.tags, again.tags)
    assert first.mel_db.dtype == np.float16 and first.mel_db.shape[0] == FEATURES.n_mels
    few = teach(path, tmp_path / "cache", feature_config=FEATURES, hop_s=3.0, max_patches=5)
    assert len(calls) == 2 and len(few.tags) == 5 and few.patch_hop_s == 9.25
    teach(path, tmp_path / "cache", feature_config=FEATURES, hop_s=6.0)  # another setting
    assert calls == [3.0, 9.25, 6.0]
    short = write_audio("short.wav", tone(440, 10.0))  # 8 patches would overlap: 3 s apart
    spaced = teach(short, tmp_path / "cache", feature_config=FEATURES, hop_s=3.0, max_patches=8)
    assert spaced.patch_hop_s == 3.0 and len(spaced.tags) == 3
    write_audio("song.wav", tone(660, 40.0))  # new content: a new cache entry
    teach(path, tmp_path / "cache", feature_config=FEATURES, hop_s=3.0)
    assert len(calls) == 5


def test_training_music_is_taken_in_turn_from_each_package_up_to_the_limit(tmp_path):
    """Whatever the manifest's order: a package of many files does not crowd out the others."""
    rows = [f"big/{i}.ogg\tbig" for i in range(6)] + ["a/1.ogg\ta", "a/0.ogg\ta", "b/0.ogg\tb"]
    for order in (rows, rows[::-1]):
        (tmp_path / "manifest.tsv").write_text("path\tpackage\n" + "\n".join(order) + "\n")
        chosen = [p.relative_to(tmp_path).parts[0] for p in music_files(tmp_path, limit=4)]
        assert chosen == ["a", "b", "big", "a"]
    first = music_files(tmp_path, limit=9)
    (tmp_path / "manifest.tsv").write_text("path\tpackage\n" + "\n".join(rows) + "\n")
    assert music_files(tmp_path, limit=9) == first  # the manifest's order changes nothing


def test_no_training_music_at_all_is_told(tmp_path):
    with pytest.raises(MirsearchError, match="no training music.*fetch_training_music"):
        default_training_files(tmp_path / "shared", tmp_path / "music")
