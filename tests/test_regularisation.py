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


def test_the_prior_pictures_are_the_seeds_five_slices_of_25_points():
    """Five horizontal slices (values of z2) of a 5 x 5 grid over (z0, z1): 125 points, each
    point of the 5 x 5 x 5 lattice over [-2, 2] once."""
    from analysis.studies.regularity import GRID, SLICES, SPAN

    g = slice_grid(SLICES, GRID, SPAN)
    assert g.shape == (5, 25, 3)
    axis = np.linspace(-2.0, 2.0, 5)
    lattice = {(a, b, c) for a in axis for b in axis for c in axis}
    points = [tuple(p) for p in g.reshape(-1, 3)]
    assert len(set(points)) == 125 and set(points) == lattice
    assert all(len(set(s[:, 2])) == 1 for s in g)  # a slice holds z2 fixed


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


@pytest.mark.slow
def test_the_verb_measures_prior_samples_with_and_without_sampling(ray_session, mlflow_store,
                                                                   workdir, idx_folder,
                                                                   capsys):
    """Two epochs on 64 images: the 3-D models are BCE + KL with and without sampling, their
    prior draws' latent coverage and FID (in a registered classifier's features) logged per
    model and side by side in the parent; bad input refused in one line before training."""
    import mlflow
    from test_quality import register_classifier

    from jobs import regularisation as verb
    from latentatlas import environment

    uri = environment.resolve_tracking_uri()
    common = ["--dataset", "mnist", "--data-path", str(idx_folder), "--tracking-uri", uri,
              "--experiment", "test"]
    assert verb.main([*common, "--classifier", "runs:/0123456789abcdef/model"]) != 0
    assert "error: --classifier runs:/0123456789abcdef/model: no such run" in \
        capsys.readouterr().err
    assert verb.main([*common, "--points", "5"]) != 0
    assert "more than 5 test codes" in capsys.readouterr().err
    classifier = register_classifier((1, 28, 28), "classifier-mnist")
    assert verb.main([*common, "--epochs", "2", "--classifier", classifier]) == 0
    out = capsys.readouterr().out
    run = mlflow.get_run(out.split("MLflow run id: ")[1].split()[0])
    m = run.data.metrics
    assert run.data.params["fid/extractors"] == "classifier-mnist-v1"
    for label in ("sampling", "no_sampling"):
        for measure in ("prior_fid", "prior_kid", "prior_precision", "prior_recall",
                        "prior_density", "prior_coverage", "aggregate_kl"):
            assert np.isfinite(m[f"regularity/{measure}_{label}"]), (measure, label)
        assert 0 <= m[f"regularity/prior_coverage_{label}"] <= 1
    kids = mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'",
                              output_format="list")
    three_d = {r.data.params["model.sample_posterior"]: r for r in kids
               if r.data.params["model.latent_dim"] == "3"}
    assert set(three_d) == {"True", "False"}
    for r in three_d.values():
        assert r.data.params["kl.policy"] == "elbo" and r.data.params["train.epochs"] == "2"
        # each FID says what it was measured against, as its parent does
        assert {k: r.data.params[k] for k in ("fid/reference", "fid/samples")} == \
            {k: run.data.params[k] for k in ("fid/reference", "fid/samples")}
    assert three_d["True"].data.metrics["regularity/prior_fid"] == pytest.approx(
        m["regularity/prior_fid_sampling"])
