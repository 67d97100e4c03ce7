"""Reading what a checkpoint says about itself without torch: the same facts the loaded network
gives, and the same refusals."""

from __future__ import annotations

import pickle
import subprocess
import sys
import zipfile
from dataclasses import asdict

import numpy as np
import pytest

from mirsearch.checkpoints import ARCHITECTURES, build, load_checkpoint, save_checkpoint
from mirsearch.config import FeatureConfig
from mirsearch.errors import ModelError
from mirsearch.model_card import read_card, read_weights

FEATURES = asdict(FeatureConfig())
SMALL = {
    "cnn": {"n_classes": 3, "embedding_dim": 24},
    "crnn": {"n_classes": 3, "embedding_dim": 40},
    "vgg": {"n_classes": 3, "embedding_dim": 56},
    "student": {
        "n_tags": 5,
        "n_teacher": 7,
        "embedding_dim": 96,  # the tagging branch's: not the matching vectors' size
        "matcher_args": {"n_classes": 3, "embedding_dim": 64},
    },
}


def small_cnn_payload(tmp_path) -> dict:
    """A small cnn checkpoint as `save_checkpoint` writes it, read back by torch: to alter."""
    import torch

    args = SMALL["cnn"] | {"feature_config": FEATURES}
    path = save_checkpoint(
        tmp_path / "m.pt",
        model=build("cnn", **args),
        arch="cnn",
        arch_args=args,
        labels=["a", "b", "c"],
        window_s=3.0,
    )
    return torch.load(path, weights_only=True)


def test_every_architecture_has_a_small_example_here():
    assert set(SMALL) == set(ARCHITECTURES)


@pytest.mark.parametrize("arch", sorted(SMALL))
def test_the_card_tells_what_the_loaded_network_does(arch, tmp_path):
    args = SMALL[arch] | {"feature_config": FEATURES}
    path = save_checkpoint(
        tmp_path / f"{arch}.pt",
        model=build(arch, **args),
        arch=arch,
        arch_args=args,
        labels=["a", "b", "c"],
        window_s=3.0,
        metadata={"matcher_sha256": "f" * 64} if arch == "student" else {},
    )
    card, loaded = read_card(path), load_checkpoint(path)
    assert card == loaded.card
    assert card.dim == loaded.model.embedding_dim
    if arch == "student":
        assert card.dim == 64 and card.matching_hash == "f" * 64
    else:
        assert card.dim == args["embedding_dim"] and card.matching_hash == card.sha256
    assert card.labels == ["a", "b", "c"] and card.feature_config == FeatureConfig()


@pytest.mark.parametrize("arch", sorted(SMALL))
def test_the_weights_read_without_torch_are_the_networks(arch, tmp_path):
    args = SMALL[arch] | {"feature_config": FEATURES}
    model = build(arch, **args)
    path = save_checkpoint(
        tmp_path / f"{arch}.pt", model=model, arch=arch, arch_args=args, labels=[], window_s=3.0
    )
    weights = read_weights(path.read_bytes())
    expected = {name: value.numpy() for name, value in model.state_dict().items()}
    assert weights.keys() == expected.keys()
    for name, value in expected.items():
        assert weights[name].dtype == value.dtype and np.array_equal(weights[name], value), name
    prefix = "matcher.layers.0." if arch == "student" else "layers.0."
    assert set(read_weights(path.read_bytes(), prefix)) == {
        name.removeprefix(prefix) for name in expected if name.startswith(prefix)
    }


def test_weights_saved_as_views_of_a_larger_tensor_read_as_the_views(tmp_path):
    """A checkpoint written by other code may hold tensors that share one storage (a fused
    weight split into views, one transposed): each is saved as an offset and strides into it,
    and read as its own values, not the storage's first ones."""
    import torch

    payload = small_cnn_payload(tmp_path)
    (first, a), (second, b) = [(n, v) for n, v in payload["state_dict"].items() if v.ndim == 2][:2]
    fused = torch.randn(a.numel() + b.numel() + 7)
    views = {
        first: fused[7 : 7 + a.numel()].view(a.shape[1], a.shape[0]).t(),
        second: fused[7 + a.numel() :].view(b.shape),
    }
    torch.save(payload | {"state_dict": payload["state_dict"] | views}, tmp_path / "views.pt")
    weights = read_weights((tmp_path / "views.pt").read_bytes())
    for name, view in views.items():
        assert np.array_equal(weights[name], view.numpy()), name


def test_the_shipped_card_is_read_without_torch():
    script = (
        "import sys\n"
        "from mirsearch.model_card import read_card\n"
        "card = read_card()\n"
        "print(card.arch, card.dim, 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    shipped = load_checkpoint()
    assert done.stdout.split() == [shipped.card.arch, str(shipped.model.embedding_dim), "False"]


def test_a_file_that_names_other_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("evil/data.pkl", pickle.dumps({"format": Payload()}, protocol=2))
    with pytest.raises(ModelError, match=r"io\.open is not allowed in a checkpoint"):
        read_card(path)
    assert not marker.exists()


def test_what_is_not_a_checkpoint_of_this_format_is_refused(tmp_path):
    import torch

    payload = small_cnn_payload(tmp_path)
    torch.save(payload | {"format": 2}, tmp_path / "newer.pt")
    with pytest.raises(ModelError, match="checkpoint format 2, this code reads 1"):
        read_card(tmp_path / "newer.pt")
    torch.save(payload | {"state_dict": [1, 2]}, tmp_path / "listed.pt")
    with pytest.raises(ModelError, match="its weights are not named tensors"):
        read_card(tmp_path / "listed.pt")
    torch.save({"weights": payload["state_dict"]}, tmp_path / "bare.pt")
    with pytest.raises(ModelError, match="missing arch, arch_args"):
        read_card(tmp_path / "bare.pt")
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as archive:
        archive.writestr("notes.txt", "no model here")
    with pytest.raises(ModelError, match="not a readable mirsearch checkpoint"):
        read_card(tmp_path / "empty.zip")
    weights = dict(payload["state_dict"])
    del weights[next(iter(weights))]  # a weight lost (a hand-edited or truncated conversion)
    torch.save(payload | {"state_dict": weights}, tmp_path / "short.pt")
    with pytest.raises(ModelError, match="weights do not fit architecture 'cnn'.*Missing key"):
        load_checkpoint(tmp_path / "short.pt")


def test_settings_with_other_windows_are_refused(tmp_path):
    card = read_card()
    card.check_window(card.window_s)
    with pytest.raises(ModelError, match=f"trained on {card.window_s} s windows but"):
        card.check_window(card.window_s + 1.0)


def test_weights_of_every_width_numpy_holds_read_as_saved_and_bfloat16_is_refused(tmp_path):
    """A checkpoint written by other code may keep weights in float64, float16 or int64: each
    is read at its own width (strides counted in its bytes, not float32's); bfloat16, which
    numpy has no type for, is refused in a line rather than read as something else."""
    import torch

    payload = small_cnn_payload(tmp_path)
    extra = {
        "wide": torch.randn(3, 5, dtype=torch.float64).t(),  # strided: 8-byte steps
        "half": torch.randn(4, 6).to(torch.float16)[:, 1:],
        "counts": torch.arange(12, dtype=torch.int64).view(3, 4).t(),
    }
    torch.save(payload | {"state_dict": payload["state_dict"] | extra}, tmp_path / "w.pt")
    weights = read_weights((tmp_path / "w.pt").read_bytes())
    for name, tensor in extra.items():
        assert weights[name].dtype == tensor.numpy().dtype
        assert np.array_equal(weights[name], tensor.numpy()), name
    brain = {"brain": torch.randn(4, 4).to(torch.bfloat16)}
    torch.save(payload | {"state_dict": payload["state_dict"] | brain}, tmp_path / "b.pt")
    with pytest.raises(ModelError, match="a type numpy does not hold"):
        read_weights((tmp_path / "b.pt").read_bytes())
