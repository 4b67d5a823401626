"""The source interface and the registry."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from latentatlas.errors import UserError
from latentatlas.record import DatasetRecord


@dataclass(frozen=True)
class Split:
    """One split of a dataset, images as uint8 (N, C, H, W) in [0, 255]."""

    dataset: str
    split: str
    images: np.ndarray
    labels: np.ndarray  # int64 (N,), -1 where a dataset has no labels
    attrs: dict[str, np.ndarray] = field(default_factory=dict)  # per-item attributes (0/1)
    source: str = ""  # what it was read from: a file, a folder

    def __post_init__(self):
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} "
                             f"{self.images.shape}")
        if len(self.labels) != len(self.images):
            raise ValueError("labels and images differ in length")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def __len__(self) -> int:
        return len(self.images)

    def as_float(self) -> np.ndarray:
        return self.images.astype(np.float32) / 255.0

    def described(self, context: str) -> DatasetRecord:
        """What a run records of the data it read: MLflow's dataset input (the UI's Dataset
        column), its digest over the images and labels as read (after any limit)."""
        digest = hashlib.sha256(np.ascontiguousarray(self.images))
        digest.update(np.ascontiguousarray(self.labels))
        return DatasetRecord(name=f"{self.dataset}:{self.split}", digest=digest.hexdigest()[:16],
                             source=self.source, context=context, rows=len(self),
                             shape=self.shape)


@dataclass(frozen=True)
class Source:
    splits: tuple[str, ...]
    load: Callable[[Path | None, str, int | None], Split]
    description: str


SOURCES: dict[str, Source] = {}


def register(name: str, splits: tuple[str, ...], description: str):
    def wrap(fn):
        SOURCES[name] = Source(splits, fn, description)
        return fn

    return wrap


def source_names() -> list[str]:
    return sorted(SOURCES)


def load_split(name: str, split: str, path: str | Path | None = None,
               limit: int | None = None) -> Split:
    if name not in SOURCES:
        raise UserError(f"data.name: unknown dataset {name!r}; known: {', '.join(source_names())}")
    source = SOURCES[name]
    if split not in source.splits:
        raise UserError(f"dataset {name!r} has no split {split!r}; splits: "
                        f"{', '.join(source.splits)}")
    return source.load(Path(path).expanduser() if path else None, split, limit)


def parse_data_address(address: str) -> tuple[str, str]:
    """`fashion-mnist:test` -> ('fashion-mnist', 'test'); the split defaults to test."""
    name, _, split = address.partition(":")
    return name, split or "test"


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise UserError(f"{path}: {what} not found")
    return path


# Register the built-in sources (import for side effects).
from latentatlas.data import cifar, celeba, digits, idx  # noqa: E402,F401,I001
