"""Regularisation pictures: the aggregate-posterior distance from the prior, prior slices, the
first-epoch trace (the job itself runs inside the main job's test)."""

import numpy as np
import pytest
import torch

from analysis.regularity import aggregate_gaussian_kl, slice_grid
from latentatlas.config import DenseVAEConfig
from latentatlas.images import to_unit_float
from latentatlas.losses import make_policy
from latentatlas.models import build_model
from latentatlas.train.common import epoch_batches
from latentatlas.train.vae import Trace, trace_indices, train_epoch


def test_aggregate_kl_matches_the_gaussian_closed_form():
    rng = np.random.default_rng(0)
    assert aggregate_gaussian_kl(rng.standard_normal((200_000, 3))) == pytest.approx(0, abs=2e-4)
    m, s = np.array([0.5, -1.0, 0.0]), np.array([0.3, 1.0, 2.0])
    codes = m + s * rng.standard_normal((400_000, 3))
    expected = 0.5 * np.sum(s**2 + m**2 - 1 - np.log(s**2))
    assert aggregate_gaussian_kl(codes) == pytest.approx(expected, rel=5e-3)
    flat = rng.standard_normal((100, 2)) @ np.array([[1.0, 2.0, 0.0], [0.0, 1.0, 0.0]])
    assert aggregate_gaussian_kl(flat) == float("inf")  # collapsed onto a plane


def test_slice_grid_covers_each_slice_row_by_row():
    g = slice_grid([-1.5, 0.0, 1.5], 4, span=2.0)
    assert g.shape == (3, 16, 3)
    assert np.array_equal(g[:, :, 2], np.repeat([[-1.5], [0.0], [1.5]], 16, axis=1))
    assert g[0, 0, :2].tolist() == [-2.0, 2.0]  # top-left: smallest z0, largest z1
    assert g[0, 3, :2].tolist() == [2.0, 2.0]  # end of the first row
    assert g[0, 15, :2].tolist() == [2.0, -2.0]


def test_trace_indices_take_the_first_item_of_each_class():
    assert trace_indices(np.array([3, 1, 3, 0, 1])).tolist() == [3, 1, 0]
    assert trace_indices(np.full(20, -1), n=4).tolist() == [0, 1, 2, 3]


def test_trace_records_codes_before_during_and_after_the_first_epoch():
    torch.manual_seed(0)
    images = np.random.default_rng(0).integers(0, 255, (80, 1, 28, 28), dtype=np.uint8)
    model = build_model(DenseVAEConfig(hidden=[16], latent_dim=2), images.shape[1:])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    trace = Trace(model, images[:5], points=5, device="cpu")
    with torch.no_grad():
        before = model.encode(to_unit_float(images[:5]))[0].numpy()
    batches = epoch_batches(80, 0, 0, 0, 1, 8)  # 10 steps: snapshots before 0, 2, 5, 7
    train_epoch(model, optimizer, make_policy("balanced"), images, batches, "cpu",
                before_step=trace.recorder(len(batches)))
    trace.snapshot()
    codes = trace.codes()
    assert codes.shape == (5, 5, 2)
    np.testing.assert_allclose(codes[0], before, rtol=1e-6)
    with torch.no_grad():
        after = model.encode(to_unit_float(images[:5]))[0].numpy()
    np.testing.assert_allclose(codes[-1], after, rtol=1e-6)
    assert not np.allclose(codes[1], codes[0]) and model.training  # trained; mode restored
