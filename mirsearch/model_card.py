"""What a checkpoint says about itself (architecture, labels, features, hashes, vector size),
read without torch or the weights; and, for the query path that runs without torch
(matcher.py), its weights as numpy arrays.

The commands that only check an index against the model answer without loading the network:
`similar` took 4.3 s and takes 1.2, `dupes` 6.5 → 3.1 s, an `index` run with nothing to do
4.5 → 1.5 s (../shared/audio indexed, a 2-core machine where importing torch takes 3-4 s).
`checkpoints.load_checkpoint` reads the card first, so both refuse a file for the same reasons.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mirsearch.config import FeatureConfig
from mirsearch.errors import ModelError

CHECKPOINT_FORMAT = 1
ASSETS = Path(__file__).resolve().parent / "assets"
REQUIRED = ("format", "arch", "arch_args", "labels", "feature_config", "window_s", "state_dict")


def default_checkpoint_path() -> Path:
    return ASSETS / "student.pt"


@dataclass(frozen=True)
class ModelCard:
    """A checkpoint's description; `shapes` holds each weight's shape, never its values."""

    arch: str
    arch_args: dict
    labels: list[str]
    feature_config: FeatureConfig
    window_s: float
    sha256: str  # of the file: the model's identity in an index and the catalog
    metadata: dict = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def matching_hash(self) -> str:
        """The near-duplicate threshold belongs to the matching vectors: a student keeps the
        calibration of the checkpoint its matching branch was copied from."""
        return self.metadata.get("matcher_sha256", self.sha256)

    @property
    def dim(self) -> int:
        """The matching vectors' size: the width going into the matching network's head (a
        student's matching branch is a plain network under `matcher.`)."""
        prefix = "matcher." if self.arch == "student" else ""
        shape = self.shapes.get(f"{prefix}head.1.weight")
        if shape is None or len(shape) != 2:
            raise ModelError(f"a {self.arch!r} checkpoint without the head its vectors feed")
        return shape[1]

    def check_window(self, window_s: float) -> None:
        """Refuse settings whose windows are not the ones the network was trained on."""
        if abs(self.window_s - window_s) > 1e-6:
            raise ModelError(
                f"the model was trained on {self.window_s} s windows but "
                f"EmbeddingConfig.window_s is {window_s} s"
            )


def read_card(path: Path | None = None) -> ModelCard:
    """The card of the checkpoint at `path` (None: the shipped one); ModelError when the file is
    not a checkpoint this code reads."""
    return read_checkpoint(path)[1]


def read_checkpoint(path: Path | None = None) -> tuple[bytes, ModelCard]:
    """The checkpoint file's bytes and their card, read once (the weights are then loaded from
    the very bytes the card describes, whatever happens to the file meanwhile)."""
    path = Path(path) if path is not None else default_checkpoint_path()
    if not path.is_file():
        raise ModelError(f"{path}: no model checkpoint there (train one with `mirsearch train`)")
    data = path.read_bytes()
    return data, _card(data, path)


def _card(data: bytes, path: Path) -> ModelCard:
    try:
        payload = _unpickled(data)
    except Exception as exc:
        raise ModelError(f"{path}: not a readable mirsearch checkpoint ({exc})") from exc
    missing = set(REQUIRED) - set(payload if isinstance(payload, dict) else {})
    if missing:
        raise ModelError(
            f"{path}: not a mirsearch checkpoint (missing {', '.join(sorted(missing))})"
        )
    if payload["format"] != CHECKPOINT_FORMAT:
        raise ModelError(
            f"{path}: checkpoint format {payload['format']}, this code reads {CHECKPOINT_FORMAT}"
        )
    try:
        feature_config = FeatureConfig(**payload["feature_config"])
    except TypeError as exc:
        raise ModelError(f"{path}: feature config does not match this code ({exc})") from exc
    weights = payload["state_dict"]
    if not isinstance(weights, dict):
        raise ModelError(f"{path}: not a mirsearch checkpoint (its weights are not named tensors)")
    return ModelCard(
        arch=payload["arch"],
        arch_args=dict(payload["arch_args"]),
        labels=list(payload["labels"]),
        feature_config=feature_config,
        window_s=float(payload["window_s"]),
        sha256=hashlib.sha256(data).hexdigest(),
        metadata=dict(payload.get("metadata", {})),
        shapes={name: w.shape for name, w in weights.items() if isinstance(w, _Weights)},
    )


def read_weights(data: bytes, prefix: str = "") -> dict[str, np.ndarray]:
    """The weights of the checkpoint file's bytes `data` whose names start with `prefix` (which
    is dropped), as numpy arrays, read without torch; ModelError if they cannot be."""
    try:
        payload = _unpickled(data, with_weights=True)
        return {
            name[len(prefix) :]: weights
            for name, weights in payload["state_dict"].items()
            if name.startswith(prefix)
        }
    except Exception as exc:
        raise ModelError(f"the checkpoint's weights cannot be read without torch ({exc})") from exc


def _unpickled(data: bytes, *, with_weights: bool = False):
    """The object torch.save wrote into the zip archive `data`, each tensor a _Weights (its shape)
    or, `with_weights`, a numpy array of its values."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        if len(names) != 1:
            raise ValueError("no torch archive in the file")
        storages = names[0].removesuffix("data.pkl") + "data/"
        read = (lambda key: archive.read(storages + str(key))) if with_weights else None
        return _Unpickler(archive.open(names[0]), read).load()


@dataclass(frozen=True)
class _Weights:
    shape: tuple[int, ...]


def _tensor(storage, storage_offset, size, stride, *rest):  # torch._utils._rebuild_tensor_v2
    """A tensor's shape, or its values when its storage was read (a numpy array)."""
    if storage is None:
        return _Weights(tuple(int(n) for n in size))
    strides = tuple(int(n) * storage.itemsize for n in stride)
    view = np.lib.stride_tricks.as_strided(storage[storage_offset:], tuple(size), strides)
    return view.copy()


@dataclass(frozen=True)
class _Storage:
    """Stands for a torch storage type named in the archive: the numpy type of its values."""

    dtype: np.dtype | None


STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _Unpickler(pickle.Unpickler):
    """Plain containers and tensors only, as torch.load(weights_only=True) allows; any other
    class named in the file is refused, so nothing in it runs. `read(key)`, when given, returns
    a storage's bytes (values are read); otherwise tensors are only their shapes."""

    def __init__(self, file, read=None):
        super().__init__(file)
        self.read = read

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _tensor
        if module == "torch" and name.endswith("Storage"):
            return _Storage(STORAGE_DTYPES.get(name))
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a checkpoint")

    def persistent_load(self, pid):
        """A tensor's storage: ('storage', type, key, location, size)."""
        if self.read is None:
            return None
        storage_type, key = pid[1], pid[2]
        if storage_type.dtype is None:
            raise ValueError("a tensor of a type numpy does not hold")
        return np.frombuffer(self.read(key), dtype=storage_type.dtype)
