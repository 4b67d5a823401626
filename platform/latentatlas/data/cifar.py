"""CIFAR-10 "python version" batches, read with an unpickler that builds only numpy arrays."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from latentatlas.data.base import Split, register, require_file
from latentatlas.errors import UserError

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
# The only globals a CIFAR batch needs: anything else in the pickle is refused, so a
# crafted file cannot run code.
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),  # the official (Python 2) files
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),  # pickle protocol 5 writers
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # bytes written by Python 3 at protocol 2
}


class ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    require_file(path, "CIFAR-10 batch")
    try:
        batch = ArrayOnlyUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise UserError(f"{path}: not a CIFAR-10 python batch ({e})") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise UserError(f"{path}: CIFAR-10 batch lacks the b'data'/b'labels' keys")
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise UserError(f"{path}: b'data' must be uint8 (N, 3072), got {data.dtype} {data.shape}")
    if len(labels) != len(data):
        raise UserError(f"{path}: {len(labels)} labels for {len(data)} images")
    return data.reshape(-1, 3, 32, 32), labels


@register("cifar10", ("train", "test"), "CIFAR-10 python batches from data.path")
def cifar10(path, split, limit):
    if path is None:
        raise UserError("data.path: the cifar10 source needs the cifar-10-batches-py folder")
    names = TRAIN_BATCHES if split == "train" else TEST_BATCHES
    images, labels, total = [], [], 0
    for name in names:
        data, lab = read_batch(path / name)
        images.append(data)
        labels.append(lab)
        total += len(data)
        if limit is not None and total >= limit:
            break
    images, labels = np.concatenate(images), np.concatenate(labels)
    n = len(images) if limit is None else min(limit, len(images))
    return Split("cifar10", split, np.ascontiguousarray(images[:n]), labels[:n],
                 source=str(path.resolve()))
