"""MNIST-format IDX files (plain or gzip): MNIST, Fashion-MNIST, or any folder of them."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from latentatlas import environment
from latentatlas.data.base import Split, register
from latentatlas.errors import UserError

IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
SPLIT_PREFIX = {"train": "train", "test": "t10k"}
MAX_DIMS = 4


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file, checking magic number, dimensions and size against the header."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise UserError(f"{path}: corrupt gzip stream ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise UserError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES:
        raise UserError(f"{path}: not an IDX image or label file (unsupported element type "
                        f"0x{code:02x})")
    if ndim > MAX_DIMS:  # images are (N, H, W), labels (N,): a larger count is not a header
        raise UserError(f"{path}: not an IDX image or label file (its header claims {ndim} "
                        "dimensions)")
    if ndim == 0 or len(raw) < 4 + 4 * ndim:
        raise UserError(f"{path}: IDX header declares {ndim} dimensions but is truncated")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[code])
    expected = int(np.prod(dims)) * dtype.itemsize
    body = len(raw) - 4 - 4 * ndim
    if body != expected:
        raise UserError(f"{path}: header says {dims} ({expected} bytes of data) "
                        f"but the file holds {body}")
    return np.frombuffer(raw, dtype, offset=4 + 4 * ndim).reshape(dims)


def find_idx(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise UserError(f"{folder / stem}[.gz]: IDX file not found")


def load_idx_split(folder: Path, split: str, limit: int | None, dataset: str) -> Split:
    if not folder.is_dir():
        raise UserError(f"{folder}: {dataset} folder not found")
    prefix = SPLIT_PREFIX[split]
    images_path = find_idx(folder, f"{prefix}-images-idx3-ubyte")
    labels_path = find_idx(folder, f"{prefix}-labels-idx1-ubyte")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise UserError(f"{images_path}: expected uint8 images (N, H, W), got {images.dtype} "
                        f"with {images.ndim} dimensions")
    if labels.ndim != 1:
        raise UserError(f"{labels_path}: expected labels (N,), got shape {labels.shape}")
    if len(images) != len(labels):
        raise UserError(f"{labels_path}: {len(labels)} labels for {len(images)} images "
                        f"in {images_path.name}")
    n = len(images) if limit is None else min(limit, len(images))
    return Split(dataset, split, np.ascontiguousarray(images[:n, None]),
                 labels[:n].astype(np.int64), source=str(images_path.resolve()))


@register("fashion-mnist", ("train", "test"),
          "Fashion-MNIST IDX files; default folder /usr/share/datasets/fashion-mnist")
def fashion_mnist(path, split, limit):
    folder = path or environment.fashion_mnist_dir() or Path(FASHION_MNIST_DIR)
    if not folder.is_dir():
        raise UserError(f"{folder}: Fashion-MNIST not found; install Debian's "
                        "dataset-fashion-mnist or set data.path")
    return load_idx_split(folder, split, limit, "fashion-mnist")


@register("mnist", ("train", "test"), "MNIST IDX files from data.path")
def mnist(path, split, limit):
    if path is None:
        raise UserError("data.path: the mnist source needs the folder holding its IDX files")
    return load_idx_split(path, split, limit, "mnist")
