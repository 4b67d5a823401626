"""Image grids a researcher can read in MLflow's artifact viewer: upscaled by whole pixels
(nearest neighbour) to at least 600 pixels wide, each row and column named."""

import numpy as np

from latentatlas.images import MIN_WIDTH, image_grid, labelled, readable_grid, readable_rows


def test_a_grid_is_upscaled_by_whole_pixels_to_a_readable_width():
    rng = np.random.default_rng(0)
    images = rng.random((16, 1, 28, 28)).astype(np.float32)
    grid = image_grid(images, ncols=8)  # 233 x 59
    big = readable_grid(images, ncols=8)
    scale = -(-MIN_WIDTH // grid.shape[1])  # 3
    assert big.shape == (grid.shape[0] * scale, grid.shape[1] * scale, 3)
    assert big.shape[1] >= MIN_WIDTH
    # nearest neighbour: every source pixel is a scale x scale block of its own value
    np.testing.assert_array_equal(big[::scale, ::scale], grid)
    np.testing.assert_array_equal(big[scale - 1::scale, scale - 1::scale], grid)
    # a grid already wide enough keeps its pixels
    wide = np.zeros((10, 700, 3), np.uint8)
    np.testing.assert_array_equal(labelled(wide, (8, 8)), wide)


def test_rows_and_columns_are_named_in_margins_left_of_and_above_the_grid():
    rows = [np.ones((8, 1, 28, 28), np.float32)] * 3
    plain = readable_rows(rows, [])
    named = readable_rows(rows, ["original", "source", "relocated into b"],
                          [f"#{i}" for i in range(8)])
    left, top = named.shape[1] - plain.shape[1], named.shape[0] - plain.shape[0]
    assert left > 8 and top > 0
    np.testing.assert_array_equal(named[top:, left:], plain)  # the grid itself is unchanged
    # the names are drawn: dark pixels in the margins, none where no row is
    assert (named[top:, :left] < 128).any() and (named[:top, left:] < 128).any()
    third = plain.shape[0] // 3
    assert (named[top:top + third, :left] < 128).any()  # the first row's name
