"""Original musicnn TF taggers' reference outputs; run in a throwaway TF venv, never the project's.

Writes an .npz of 4 excerpts' waveforms, mel spectrograms and network inputs, with the MSD and MTT
musicnn taggers' outputs, for the PyTorch port's parity tests (see tests/fixtures/README.md).

Usage, from the repository root (the fixture was made with these versions):

    python3.11 -m venv /tmp/tfvenv
    /tmp/tfvenv/bin/pip install tensorflow-cpu==2.21.0 librosa==0.11.0 numpy==2.4.6 av==18.1.0
    /tmp/tfvenv/bin/python scripts/musicnn_reference.py --wheel-dir /tmp/mn/wheel/musicnn \\
        --audio ../shared/audio --out tests/fixtures/musicnn_reference.npz
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import librosa  # noqa: E402
import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

CLIPS = [
    "hedgewars__rock.ogg",
    "supertux__chipdisko.m4a",
    "wesnoth__battle-epic.ogg",
    "lincity__02_-_robert_van_herk_-_city_blues.ogg",
]
SR = 16000
OFFSET_S = 30.0
DURATION_S = 3.0  # 48,000 samples -> 188 centred frames; the first 187 are the patch
N_FRAMES = 187
HOP, N_FFT, N_MELS = 256, 512, 96
MODELS = ["MSD_musicnn", "MTT_musicnn"]

# Tensor names in the original checkpoints' .meta graphs (TF 1.12 training graphs).
INPUT = "model/Placeholder:0"  # float32 [None, 187, 96]
IS_TRAINING = "model/Placeholder_2:0"  # bool scalar
FETCH = {
    "tags": "model/Sigmoid:0",  # [None, 50]
    "penultimate": "model/dense/Relu:0",  # [None, 200], before the last batch norm
    # musicnn's own "penultimate" feature: the batch norm after dense/Relu
    "penultimate_bn": "model/batch_normalization_10/batchnorm/add_1:0",
}


def ensure_wheel(wheel_dir: Path) -> Path:
    """The unzipped musicnn 0.1.0 package directory; downloaded with pip if absent."""
    if (wheel_dir / "MSD_musicnn" / ".index").exists():
        return wheel_dir
    root = Path("/tmp/mn")
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "musicnn==0.1.0", "-d", str(root)],
        check=True,
    )
    wheel = next(root.glob("musicnn-0.1.0-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(root / "wheel")
    return root / "wheel" / "musicnn"


def load_labels(wheel_dir: Path) -> tuple[list[str], list[str]]:
    spec = importlib.util.spec_from_file_location(
        "musicnn_configuration", wheel_dir / "configuration.py"
    )
    cfg = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cfg)
    assert (cfg.SR, cfg.FFT_HOP, cfg.FFT_SIZE, cfg.N_MELS) == (SR, HOP, N_FFT, N_MELS)
    return list(cfg.MSD_LABELS), list(cfg.MTT_LABELS)


def load_excerpt(path: Path) -> tuple[np.ndarray, str]:
    """librosa.load at 16 kHz from 30 s for 3 s; files libsndfile cannot read (.m4a) are first
    decoded losslessly with PyAV to an in-memory float32 WAV at their own rate and channels."""
    kw = dict(sr=SR, offset=OFFSET_S, duration=DURATION_S)
    try:
        sf.info(str(path))
    except RuntimeError:  # soundfile.LibsndfileError: a format libsndfile cannot read
        pass
    else:
        y, _ = librosa.load(str(path), **kw)
        return y, "soundfile"
    import av

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        chunks = []
        for frame in container.decode(stream):
            assert frame.format.name == "fltp", frame.format.name  # AAC decodes to planar float
            chunks.append(frame.to_ndarray())
    samples = np.concatenate(chunks, axis=1).T.astype(np.float32)  # (n, channels)
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="WAV", subtype="FLOAT")
    buf.seek(0)
    y, _ = librosa.load(buf, **kw)
    return y, f"pyav {av.__version__} -> float32 wav"


def strip_meta_graph(meta_path: Path):
    """The .meta MetaGraphDef without the `_output_shapes` attributes TF 1.12 stored, which recent
    TF rejects on the gradient nodes (FusedBatchNormGrad); the graph itself is unchanged."""
    from tensorflow.core.protobuf import meta_graph_pb2

    mg = meta_graph_pb2.MetaGraphDef()
    mg.ParseFromString(meta_path.read_bytes())
    for node in mg.graph_def.node:
        if "_output_shapes" in node.attr:
            del node.attr["_output_shapes"]
    return mg


def run_model(tf, model_dir: Path, inputs: dict[str, np.ndarray]) -> dict[str, dict]:
    """For each named batch of patches, the fetched tensors, one session.run per batch."""
    graph = tf.Graph()
    with graph.as_default():
        meta = strip_meta_graph(model_dir / ".meta")
        saver = tf.compat.v1.train.import_meta_graph(meta, clear_devices=True)
        for op in graph.get_operations():
            if op.type == "Placeholder":
                print(f"  placeholder {op.name} {op.outputs[0].dtype.name} {op.outputs[0].shape}")
        for key, name in FETCH.items():
            t = graph.get_tensor_by_name(name)
            print(f"  fetch {key}: {name} <- {t.op.type}({', '.join(i.name for i in t.op.inputs)})")
        fetches = {k: graph.get_tensor_by_name(v) for k, v in FETCH.items()}
        out = {}
        with tf.compat.v1.Session(graph=graph) as sess:
            # the checkpoint prefix is the directory itself, with an empty file stem
            saver.restore(sess, str(model_dir) + "/")
            for variant, patches in inputs.items():
                res = sess.run(fetches, feed_dict={INPUT: patches, IS_TRAINING: False})
                out[variant] = {k: np.asarray(v, dtype=np.float32) for k, v in res.items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel-dir", type=Path, default=Path("/tmp/mn/wheel/musicnn"))
    ap.add_argument("--audio", type=Path, default=Path("../shared/audio"))
    ap.add_argument("--out", type=Path, default=Path("tests/fixtures/musicnn_reference.npz"))
    args = ap.parse_args()

    import tensorflow as tf

    tf.compat.v1.disable_eager_execution()

    wheel_dir = ensure_wheel(args.wheel_dir)
    msd_labels, mtt_labels = load_labels(wheel_dir)

    waveforms, mel_power, patches, decoders = [], [], [], []
    for name in CLIPS:
        y, decoder = load_excerpt(args.audio / name)
        mel = librosa.feature.melspectrogram(
            y=y, sr=SR, hop_length=HOP, n_fft=N_FFT, n_mels=N_MELS
        ).T
        assert y.shape == (int(SR * DURATION_S),), (name, y.shape)
        assert mel.shape[0] >= N_FRAMES, (name, mel.shape)
        mel = mel[:N_FRAMES]
        with np.errstate(over="ignore"):
            # exactly as musicnn: computed in float16, so 10000 * x overflows to +inf for x > 6.5504
            patch = np.log10(10000 * mel.astype(np.float16) + 1)
        waveforms.append(y.astype(np.float32))
        mel_power.append(mel.astype(np.float32))
        patches.append(patch.astype(np.float32))
        decoders.append(decoder)
        print(
            f"{name}: {decoder}, {y.shape[0]} samples, mel max {mel.max():.3f}, "
            f"non-finite patch bins {int((~np.isfinite(patch)).sum())}"
        )
    inputs = {
        # musicnn's own input, +inf where the mel power exceeds 6.5504
        "": np.stack(patches),
        # the same formula in float32: finite
        "_f32": np.log10(10000 * np.stack(mel_power) + 1).astype(np.float32),
    }

    results = {}
    for i, model in enumerate(MODELS):
        model_dir = wheel_dir / model
        if i == 0:
            print(f"{model} checkpoint variables (Adam slots and beta powers left out):")
            # the directory's `checkpoint` file names the author's machine: read the prefix directly
            reader = tf.compat.v1.train.NewCheckpointReader(str(model_dir) + "/")
            for var, shape in sorted(reader.get_variable_to_shape_map().items()):
                if "Adam" not in var and not var.startswith("beta"):
                    print(f"  {var} {shape}")
        print(f"{model} graph:")
        results[model] = run_model(tf, model_dir, inputs)

    for j, name in enumerate(CLIPS):
        print(name)
        for variant in inputs:
            for model, labels in (("MSD_musicnn", msd_labels), ("MTT_musicnn", mtt_labels)):
                p = results[model][variant]["tags"][j]
                top = np.argsort(-p)[:3]
                tops = ", ".join(f"{labels[k]} {p[k]:.3f}" for k in top)
                print(f"  {model}{variant or ' (float16 input)'}: {tops}")

    outputs = {}
    for model, short in (("MSD_musicnn", "msd"), ("MTT_musicnn", "mtt")):
        for variant, res in results[model].items():
            for key, arr in res.items():
                outputs[f"{short}_{key}{variant}"] = arr

    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        clip_names=np.array(CLIPS),
        decoders=np.array(decoders),
        offset_s=np.float32(OFFSET_S),
        sample_rate=np.int32(SR),
        waveforms=np.stack(waveforms),
        mel_power=np.stack(mel_power),
        patches=inputs[""],
        **outputs,
        msd_labels=np.array(msd_labels),
        mtt_labels=np.array(mtt_labels),
        tensorflow_version=np.array([tf.__version__]),
        librosa_version=np.array([librosa.__version__]),
        numpy_version=np.array([np.__version__]),
    )
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
