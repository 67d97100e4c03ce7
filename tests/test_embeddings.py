"""The shipped model as an embedder: shapes, norms, determinism, invariance on synthetic music."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import torch
from conftest import SR, clicks
from threadpoolctl import threadpool_info, threadpool_limits

from mirsearch.checkpoints import build, load_checkpoint, save_checkpoint
from mirsearch.config import EmbeddingConfig, FeatureConfig
from mirsearch.demo import demo_pieces, render
from mirsearch.embeddings import Embedder, for_inference
from mirsearch.student import RHYTHM_LAGS


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture(scope="module")
def pieces():
    return [render(p, sample_rate=SR) for p in demo_pieces(2, seed=11)]


def test_windows_every_hop_unit_norm_and_a_track_vector(embedder, pieces):
    x = pieces[0][: 20 * SR]
    a = embedder.analyse(x, hop_s=1.5)
    assert a.vectors.shape == (12, embedder.dim) and a.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a.vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(a.offsets_s, np.arange(12) * 1.5)
    assert np.linalg.norm(a.track_vector) == pytest.approx(1.0, abs=1e-5)
    assert a.probabilities.sum() == pytest.approx(1.0, abs=1e-4)
    assert a.window_probabilities.shape == (12, len(embedder.labels))


@pytest.mark.parametrize("bpm, lag", [(120, 8), (160, 6), (96, 10)])
def test_the_rhythm_profile_finds_the_beat(embedder, bpm, lag):
    if not embedder.is_student:
        pytest.skip("the shipped checkpoint is not a student network")
    profile = embedder.analyse(clicks(bpm, 20.0)).rhythm.reshape(-1, RHYTHM_LAGS).mean(axis=0)
    assert int(profile[3:].argmax()) + 4 == lag  # 16 stem columns a second; lags from 1


def test_matching_gives_the_analysis_vectors_and_print(embedder, pieces):
    full = embedder.analyse(pieces[0], hop_s=0.5)
    (lean,) = embedder.matching(pieces[0], hop_s=0.5, frequency_scales=[1.0])
    np.testing.assert_array_equal(lean.vectors, full.vectors)
    np.testing.assert_array_equal(lean.offsets_s, full.offsets_s)
    np.testing.assert_array_equal(lean.fingerprint, full.fingerprint)


def test_matching_at_several_scales_equals_each_scale_alone(embedder, pieces):
    scales = [2 ** (-1 / 12), 1.0, 2 ** (1 / 12)]
    together = embedder.matching(pieces[0], hop_s=0.5, frequency_scales=scales)
    for scale, joint in zip(scales, together, strict=True):
        (alone,) = embedder.matching(pieces[0], hop_s=0.5, frequency_scales=[scale])
        assert (joint.vectors * alone.vectors).sum(axis=1).min() > 0.9999
        np.testing.assert_array_equal(joint.fingerprint, alone.fingerprint)
    shifted = (together[0].vectors * together[1].vectors).sum(axis=1).mean()
    assert shifted < 0.999  # each scale did read the signal differently


def test_same_samples_give_bit_identical_vectors(embedder, pieces):
    first = embedder.analyse(pieces[0], hop_s=1.5).vectors
    again = embedder.analyse(pieces[0].copy(), hop_s=1.5).vectors
    assert np.array_equal(first, again)


def test_bfloat16_where_native_keeps_the_float32_answers(embedder, pieces):
    if not embedder.bfloat16:
        pytest.skip("no native bfloat16 on this CPU (AVX-512 BF16 or AMX): float32 throughout")
    exact = Embedder(config=EmbeddingConfig(bfloat16=False))
    assert not exact.bfloat16
    fast, slow = embedder.analyse(pieces[0]), exact.analyse(pieces[0])
    assert not np.array_equal(fast.vectors, slow.vectors)  # bfloat16 did run
    assert (fast.vectors * slow.vectors).sum(axis=1).min() > 0.9995
    assert float(fast.track_vector @ slow.track_vector) > 0.9995
    np.testing.assert_allclose(fast.tag_probabilities, slow.tag_probabilities, atol=0.01)
    np.testing.assert_allclose(fast.probabilities, slow.probabilities, atol=0.01)
    np.testing.assert_array_equal(fast.fingerprint, slow.fingerprint)  # the print stays float32


def test_a_short_clip_is_padded_to_one_window(embedder):
    a = embedder.analyse(np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 0.1)
    assert a.vectors.shape == (1, embedder.dim)


def test_a_perturbed_window_stays_nearer_its_source_than_other_music(embedder, pieces):
    """Every 6 s window of one piece, 6 dB down under noise, against the other's window then."""
    rng = np.random.default_rng(3)
    margins = []
    for start in range(0, 24 * SR, 2 * SR):
        x, other = pieces[0][start : start + 6 * SR], pieces[1][start : start + 6 * SR]
        noisy = 0.5 * x + 0.02 * rng.standard_normal(x.size).astype(np.float32)
        a, b, c = (embedder.analyse(s, hop_s=1.5).vectors[0] for s in (x, noisy, other))
        margins.append(float(a @ b) - float(a @ c))
    assert min(margins) > 0.0 and np.median(margins) > 0.3, margins


def test_for_inference_folds_the_norms_and_answers_as_the_network_it_copies():
    """The shipped student, its batch norms trained: the copy the Embedder runs gives the same
    vectors, tagging embeddings and rhythm, and the checkpoint's network keeps its norms (it is
    what a genre head is saved with)."""
    shipped = load_checkpoint().model
    keys = set(shipped.state_dict())
    fast = for_inference(shipped)
    mel = shipped.front_end(torch.randn(30 * 16_000) * 0.1)
    with torch.inference_mode():
        expected = shipped.both_windows(mel, window_s=3.0, hop_s=1.5)
        got = fast.both_windows(mel, window_s=3.0, hop_s=1.5)
    for a, b in zip(expected, got, strict=True):
        assert a.shape == b.shape
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * float(a.abs().max()))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in shipped.modules()) > 5
    assert set(shipped.state_dict()) == keys


def test_a_worker_s_embedder_caps_numpy_s_blas_as_well_as_torch():
    """A pool's worker runs one thread of each pool: OpenBLAS's own threads, one a core, spin
    between calls on cores the other workers need."""
    threads = torch.get_num_threads()
    with threadpool_limits(limits=2):  # as on a 2-core machine; as they were afterwards
        try:
            Embedder(threads=1)
            assert torch.get_num_threads() == 1
            assert {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"} == {1}
        finally:
            torch.set_num_threads(threads)


def test_a_silent_lead_in_is_left_out_of_the_track_vector_tags_and_genres(embedder, pieces):
    """Averaged in, a silent lead-in's windows pull the tags and genres towards what silence
    looks like; left out, the clip reads as the music alone."""
    x = pieces[0][: 12 * SR]
    plain = embedder.analyse(x, hop_s=0.5)
    led = embedder.analyse(np.concatenate([np.zeros(4 * SR, np.float32), x]), hop_s=0.5)
    assert plain.sounding.all()
    np.testing.assert_array_equal(led.sounding, led.offsets_s >= 4.0)
    assert float(led.track_vector @ plain.track_vector) > 0.99
    np.testing.assert_allclose(led.tag_probabilities, plain.tag_probabilities, atol=0.02)
    np.testing.assert_allclose(led.probabilities, plain.probabilities, atol=0.02)
    everything = led.window_probabilities.mean(axis=0)  # what averaging every window gives
    assert np.abs(everything - plain.probabilities).max() > 0.02


def test_a_signal_with_no_window_of_sound_is_read_whole_not_as_nothing(embedder):
    """A signal in which no window is sound (here noise at -75 dBFS, handed to `analyse`
    directly): its vector, tags and genres come from every window, not from none (the mean of
    nothing is NaN, which the index would have stored)."""
    quiet = 10 ** (-75 / 20) * np.random.default_rng(0).standard_normal(10 * SR)
    a = embedder.analyse(quiet.astype(np.float32), hop_s=1.0)
    assert a.sounding.all() and len(a.sounding) > 1
    assert np.isfinite(a.track_vector).all()
    assert np.linalg.norm(a.track_vector) == pytest.approx(1.0, abs=1e-5)
    assert np.isfinite(a.tag_probabilities).all() and np.isfinite(a.probabilities).all()


def test_a_network_of_ones_own_also_leaves_a_silent_lead_in_out(tmp_path, pieces):
    """The same for a genre network trained with `mirsearch train` (MIRSEARCH_MODEL): its
    track vector and genre probabilities are the sounding windows' average."""
    features = asdict(FeatureConfig())
    path = save_checkpoint(
        tmp_path / "cnn.pt",
        model=build("cnn", n_classes=4, feature_config=features).eval(),
        arch="cnn",
        arch_args={"n_classes": 4, "feature_config": features},
        labels=["a", "b", "c", "d"],
        window_s=3.0,
    )
    own = Embedder(path)
    x = pieces[0][: 12 * SR]
    plain = own.analyse(x, hop_s=0.5)
    led = own.analyse(np.concatenate([np.zeros(4 * SR, np.float32), x]), hop_s=0.5)
    np.testing.assert_array_equal(led.sounding, led.offsets_s >= 4.0)
    heard = led.vectors[led.sounding].mean(axis=0)
    np.testing.assert_allclose(led.track_vector, heard / np.linalg.norm(heard), atol=1e-5)
    np.testing.assert_allclose(
        led.probabilities, led.window_probabilities[led.sounding].mean(axis=0), atol=1e-6
    )
    assert float(led.track_vector @ plain.track_vector) > 0.99
