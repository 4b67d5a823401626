"""Image grids as uint8 arrays (pure numpy): what MLflow stores as PNG; images as tensors."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def to_unit_float(batch: np.ndarray, device="cpu") -> torch.Tensor:
    """uint8 images (N, C, H, W) -> float32 tensor in [0, 1] on `device`; float arrays (a
    second stage's training data are codes, not images) as float32, unscaled."""
    import torch  # here: the grids below serve verbs that load no model

    if not batch.flags.writeable:  # e.g. a slice of a read-only object-store array
        batch = batch.copy()
    x = torch.from_numpy(batch).to(device, non_blocking=True).float()
    return x.div_(255.0) if batch.dtype == np.uint8 else x


def image_grid(images: np.ndarray, ncols: int, pad: int = 1) -> np.ndarray:
    """(N, C, H, W) floats in [0, 1] -> (rows*(H+pad)+pad, cols*(W+pad)+pad, 3) uint8."""
    images = np.asarray(images, dtype=np.float32)
    n, c, h, w = images.shape
    if c == 1:
        images = np.repeat(images, 3, axis=1)
    nrows = max(1, -(-n // ncols))
    grid = np.ones((nrows * (h + pad) + pad, ncols * (w + pad) + pad, 3), np.float32)
    for i, img in enumerate(images):
        r, col = divmod(i, ncols)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[top:top + h, left:left + w] = img.transpose(1, 2, 0)
    return (np.clip(grid, 0, 1) * 255 + 0.5).astype(np.uint8)


def stacked_rows(rows: list[np.ndarray], pad: int = 1) -> np.ndarray:
    """Rows of equally many images (e.g. originals over reconstructions) as one grid."""
    return image_grid(np.concatenate(rows), ncols=len(rows[0]), pad=pad)


# MLflow's artifact viewer shows a PNG at its own size: a grid of 28x28 images is a smudge
# below ~600 pixels, and rows without names cannot be told apart.
MIN_WIDTH = 600
LABEL_HEIGHT = 14  # a line of Pillow's default bitmap font, with a margin


def labelled(grid: np.ndarray, cell: tuple[int, int], rows=(), columns=(), pad: int = 1,
             min_width: int = MIN_WIDTH) -> np.ndarray:
    """A grid of `image_grid` (cells of `cell` = (H, W) pixels, `pad` apart) made readable:
    upscaled by a whole factor (nearest neighbour: every pixel a square) to at least
    `min_width` wide, each row named in a left margin, each column above it."""
    from PIL import Image, ImageDraw, ImageFont

    scale = max(1, -(-min_width // grid.shape[1]))
    big = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
    font = ImageFont.load_default()
    left = max((int(font.getlength(str(t))) for t in rows), default=-8) + 8
    top = LABEL_HEIGHT if len(columns) else 0
    canvas = Image.new("RGB", (left + big.shape[1], top + big.shape[0]), "white")
    canvas.paste(Image.fromarray(big), (left, top))
    draw = ImageDraw.Draw(canvas)
    (h, w), step = cell, lambda i, size: (pad + i * (size + pad)) * scale  # noqa: E731
    for i, text in enumerate(rows):
        draw.text((4, top + step(i, h) + h * scale // 2 - 5), str(text), fill="black",
                  font=font)
    for j, text in enumerate(columns):
        draw.text((left + step(j, w) + 1, 1), str(text), fill="black", font=font)
    return np.asarray(canvas)


def readable_rows(rows: list[np.ndarray], labels, columns=()) -> np.ndarray:
    """`stacked_rows`, each row named, readable in MLflow (`labelled`)."""
    return labelled(stacked_rows(rows), rows[0].shape[-2:], labels, columns)


def readable_grid(images: np.ndarray, ncols: int, rows=(), columns=()) -> np.ndarray:
    """`image_grid`, readable in MLflow (`labelled`), rows and columns named if given."""
    return labelled(image_grid(images, ncols), np.shape(images)[-2:], rows, columns)


def mean_pairwise_mse(images: np.ndarray) -> float:
    """Mean over all pairs i < j of the per-pixel MSE between images i and j, in closed form:
    sum_{i<j} |x_i - x_j|^2 = n sum_i |x_i|^2 - |sum_i x_i|^2."""
    x = np.asarray(images, np.float64).reshape(len(images), -1)
    n = len(x)
    total = n * (x**2).sum() - (x.sum(axis=0) ** 2).sum()
    return float(total / (n * (n - 1) / 2) / x.shape[1])
