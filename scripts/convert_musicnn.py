"""`make teacher`: convert the musicnn taggers' TensorFlow checkpoints to mirsearch teacher files.

The musicnn 0.1.0 wheel (PyPI, ISC licence, Music Technology Group, UPF) ships TF1 checkpoints.
This script reads them without TensorFlow: the `.index` file is a LevelDB table whose values are
`BundleEntryProto` messages (dtype, shape, offset and size of each tensor in the `.data` shard),
and the `.data-00000-of-00001` shard holds the raw little-endian tensors. It keeps the model's
variables (not the optimiser's slots) under their TF names and saves them with the labels as
plain tensors (`torch.load(..., weights_only=True)`).

    .venv/bin/python scripts/convert_musicnn.py --out mirsearch/assets/teachers
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

WHEEL = "musicnn==0.1.0"
MODELS = {"msd": "MSD_musicnn", "mtt": "MTT_musicnn"}
DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64, 10: np.bool_}


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes):
    """(field number, value) pairs of a protobuf message: ints for varints, bytes otherwise."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos : pos + 4], "little"), pos + 4
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos : pos + 8], "little"), pos + 8
        else:
            raise ValueError(f"protobuf wire type {wire} not expected in a checkpoint index")
        yield number, value


def _block_entries(table: bytes, offset: int, size: int):
    """Key/value pairs of one LevelDB block (prefix-compressed keys, restart array at the end)."""
    if table[offset + size] != 0:
        raise ValueError("compressed checkpoint index blocks are not supported")
    block = table[offset : offset + size]
    n_restarts = int.from_bytes(block[-4:], "little")
    end = len(block) - 4 - 4 * n_restarts
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + value_len]
        pos += value_len


def read_checkpoint(directory: Path) -> dict[str, np.ndarray]:
    """Every tensor of a TF checkpoint V2 saved with an empty file stem, as musicnn's are
    (`directory/.index` + `directory/.data-00000-of-00001`)."""
    table = (directory / ".index").read_bytes()
    data = (directory / ".data-00000-of-00001").read_bytes()
    footer = table[-48:]
    _, pos = _varint(footer, 0)  # metaindex handle: offset, size
    _, pos = _varint(footer, pos)
    index_offset, pos = _varint(footer, pos)
    index_size, _ = _varint(footer, pos)
    tensors = {}
    for _, handle in _block_entries(table, index_offset, index_size):
        offset, pos = _varint(handle, 0)
        size, _ = _varint(handle, pos)
        for key, value in _block_entries(table, offset, size):
            if not key:  # the bundle header
                continue
            entry = dict(_fields(value))
            if entry.get(3, 0) != 0 or 7 in entry:
                raise ValueError(f"{key!r}: sharded or sliced tensors are not supported")
            shape = [
                dict(_fields(dim)).get(1, 0) for n, dim in _fields(entry.get(2, b"")) if n == 2
            ]
            start = entry.get(4, 0)
            raw = data[start : start + entry.get(5, 0)]
            tensors[key.decode()] = np.frombuffer(raw, DTYPES[entry.get(1, 1)]).reshape(shape)
    return tensors


def _labels(configuration: Path) -> dict[str, list[str]]:
    """MSD_LABELS and MTT_LABELS from musicnn/configuration.py, read without executing it."""
    tree = ast.parse(configuration.read_text())
    return {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and node.targets[0].id.endswith("_LABELS")
    }


def _wheel_dir(work: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", WHEEL, "-d", str(work)],
        check=True,
    )
    wheel = next(work.glob("musicnn-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(work / "wheel")
    return work / "wheel" / "musicnn"


def convert(wheel_dir: Path, out_dir: Path) -> list[Path]:
    labels = _labels(wheel_dir / "configuration.py")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for short, name in MODELS.items():
        tensors = read_checkpoint(wheel_dir / name)
        weights = {
            key: torch.from_numpy(np.array(value, dtype=np.float32))
            for key, value in tensors.items()
            if "Adam" not in key and not key.endswith("_power")  # the optimiser's state
        }
        payload = {
            "name": name,
            "labels": labels[f"{short.upper()}_LABELS"],
            "weights": weights,
            "source": f"{WHEEL} (PyPI), {name}/, ISC licence, Music Technology Group (UPF)",
        }
        path = out_dir / f"{short}_musicnn.pt"
        torch.save(payload, path)
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel-dir", type=Path, help="an unpacked musicnn/ (default: download)")
    parser.add_argument("--out", type=Path, default=Path("mirsearch/assets/teachers"))
    parser.add_argument("--list", action="store_true", help="print the variables and stop")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        wheel_dir = args.wheel_dir or _wheel_dir(Path(work))
        if args.list:
            for key, value in read_checkpoint(wheel_dir / MODELS["msd"]).items():
                print(key, value.shape)
            return
        for path in convert(wheel_dir, args.out):
            print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
