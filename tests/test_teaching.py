"""Teaching: the teachers' outputs are cached per file and per setting."""

import numpy as np
from conftest import SR, tone

from mirsearch import teaching
from mirsearch.config import FeatureConfig
from mirsearch.teaching import teach

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
    write_audio("song.wav", tone(660, 40.0))  # new content: a new cache entry
    teach(path, tmp_path / "cache", feature_config=FEATURES, hop_s=3.0)
    assert len(calls) == 3
