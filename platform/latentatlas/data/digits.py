"""scikit-learn's bundled 8x8 digits: always available, the last-resort dataset."""

from __future__ import annotations

import numpy as np

from latentatlas.data.base import Split, register

TRAIN_SIZE = 1500  # of 1797; the rest is the test split


@register("digits", ("train", "test"), "scikit-learn's bundled 8x8 digits (1797 images)")
def digits(path, split, limit):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    part = slice(0, TRAIN_SIZE) if split == "train" else slice(TRAIN_SIZE, None)
    images, labels = images[part], labels[part]
    n = len(images) if limit is None else min(limit, len(images))
    return Split("digits", split, np.ascontiguousarray(images[:n]), labels[:n],
                 source="sklearn.datasets.load_digits")
