"""Linear maps against planted truths, numpy's lstsq and scipy's orthogonal_procrustes."""

import numpy as np
import pytest
import scipy.linalg

from analysis.linear_maps import (
    ESTIMATORS,
    LinearMap,
    SufficientStats,
    fit_from_stats,
    fit_linear_map,
)


def planted(n=500, dx=6, dy=4, noise=0.0, bias=True, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dx)) * rng.uniform(0.5, 3, dx) + rng.normal(size=dx)
    A, b = rng.normal(size=(dx, dy)), rng.normal(size=dy) if bias else np.zeros(dy)
    return x, x @ A + b + noise * rng.normal(size=(n, dy)), A, b


@pytest.mark.parametrize("bias", [True, False])
def test_ols_recovers_a_planted_map_exactly(bias):
    x, y, A, b = planted(bias=bias)
    m = fit_linear_map(x, y, "ols" if bias else "ols_nobias")
    np.testing.assert_allclose(m.A, A, atol=1e-6)
    np.testing.assert_allclose(m.b, b, atol=1e-6)


def test_ols_with_noise_matches_numpy_lstsq():
    x, y, _, _ = planted(noise=0.3, seed=1)
    ones = np.hstack([x, np.ones((len(x), 1))])
    ref = np.linalg.lstsq(ones, y, rcond=None)[0]
    m = fit_linear_map(x, y, "ols")
    np.testing.assert_allclose(m.A, ref[:-1], atol=1e-8)
    np.testing.assert_allclose(m.b, ref[-1], atol=1e-8)
    np.testing.assert_allclose(fit_linear_map(x, y, "ols_nobias").A,
                               np.linalg.lstsq(x, y, rcond=None)[0], atol=1e-8)


def test_ridge_is_the_closed_form():
    x, y, _, _ = planted(noise=0.1, seed=2)
    lam = 3.0
    want = np.linalg.solve(x.T @ x + lam * np.eye(x.shape[1]), x.T @ y)
    np.testing.assert_allclose(fit_linear_map(x, y, "ridge", lam=lam).A, want, atol=1e-10)


def standardise(v):
    return (v - v.mean(0)) / v.std(0)


@pytest.mark.parametrize("dx,dy", [(5, 5), (6, 4), (3, 5)])
def test_procrustes_matches_scipy_after_standardisation(dx, dy):
    rng = np.random.default_rng(dx * 10 + dy)
    x, y = rng.normal(size=(300, dx)) * 2 + 1, rng.normal(size=(300, dy)) * 0.5 - 2
    d = max(dx, dy)
    pad = lambda v: np.hstack([v, np.zeros((len(v), d - v.shape[1]))])  # noqa: E731
    r, _ = scipy.linalg.orthogonal_procrustes(pad(standardise(x)), pad(standardise(y)))
    m = fit_linear_map(x, y, "procrustes")
    want = (pad(standardise(x)) @ r)[:, :dy] * y.std(0) + y.mean(0)
    np.testing.assert_allclose(m(x), want, atol=1e-8)


def test_procrustes_recovers_a_planted_rotation():
    rng = np.random.default_rng(5)
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    x = rng.normal(size=(2000, 4))
    x = x - x.mean(0)
    x = x @ np.linalg.inv(np.linalg.cholesky(x.T @ x / len(x))).T  # white: cov exactly I
    y = x @ q  # also white, so standardising changes neither side
    m = fit_linear_map(x, y, "procrustes")
    np.testing.assert_allclose(m(x), y, atol=1e-6)


def test_statistics_of_seven_uneven_blocks_equal_the_whole():
    x, y, _, _ = planted(n=1000, noise=0.2, seed=3)
    cuts = [0, 1, 50, 51, 333, 600, 999, 1000]
    parts = [SufficientStats.of(x[a:b], y[a:b]) for a, b in zip(cuts[:-1], cuts[1:],
                                                                 strict=True)]
    streamed = sum(parts[1:], parts[0])
    for name in ESTIMATORS:
        a, b = fit_linear_map(x, y, name), fit_from_stats(streamed, name)
        np.testing.assert_allclose(b.A, a.A, atol=1e-9)
        np.testing.assert_allclose(b.b, a.b, atol=1e-9)


def test_masked_statistics_equal_the_statistics_of_the_masked_rows():
    x, y, _, _ = planted(n=20_000, seed=5)  # more rows than one float64 chunk
    rows = np.random.default_rng(5).random(20_000) < 0.3
    a, b = SufficientStats.of(x, y, rows), SufficientStats.of(x[rows], y[rows])
    assert a.n == b.n == rows.sum()
    for key in ("sx", "sy", "sxx", "sxy", "syy"):
        np.testing.assert_allclose(getattr(a, key), getattr(b, key), rtol=1e-12)


def test_exactly_d_support_rows_solve_exactly():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(6, 6)), rng.normal(size=(6, 3))
    m = fit_linear_map(x, y, "ols_nobias")
    np.testing.assert_allclose(m(x), y, atol=1e-9)


def test_map_saves_and_loads(tmp_path):
    x, y, _, _ = planted()
    m = fit_linear_map(x, y, "ols")
    m.save(tmp_path / "map.npz")
    back = LinearMap.load(tmp_path / "map.npz")
    assert back.estimator == "ols" and np.array_equal(back.A, m.A)
    assert (back.rank, back.dims) == (m.rank, m.dims) == (6, 6)


def near_dead_support(n=16, active=10, dead=6, seed=0):
    """Codes as a VAE's support set gives them: `active` variables of unit spread and
    `dead` ones that barely move, n rows; the target depends on the active ones only."""
    rng = np.random.default_rng(seed)
    scale = np.r_[np.ones(active), np.full(dead, 1e-3)]
    x = rng.normal(size=(n + 2000, active + dead)) * scale
    y = x[:, :active] @ rng.normal(size=(active, 8)) + 0.05 * rng.normal(size=(n + 2000, 8))
    return x[:n], y[:n], x[n:], y[n:]


def test_a_rank_deficient_support_fit_leaves_out_what_the_rows_do_not_determine():
    """16 rows in 16 dimensions with a bias: the centred system has rank 15, and 6 variables
    barely move. Cholesky did not see it and returned a map with entries ~2e4 and a held-out
    error ~1e3; the fit must drop the directions the rows do not determine (singular values
    below 1e-3 of the largest), say so, and predict as well as a ridge."""
    x, y, x_out, y_out = near_dead_support(seed=1)
    m = fit_linear_map(x, y, "ols")
    assert m.rank == 10 and m.dims == 16 and m.rank_deficient
    xc, yc = x - x.mean(0), y - y.mean(0)
    ref = np.linalg.lstsq(xc, yc, rcond=1e-3)[0]  # numpy's truncated SVD, same cutoff
    np.testing.assert_allclose(m.A, ref, atol=1e-8)
    assert np.abs(m.A).max() < 10
    held_out = ((m(x_out) - y_out) ** 2).mean()
    ridge = fit_linear_map(x, y, "ridge_authors")
    assert held_out < 1.5 * ((ridge(x_out) - y_out) ** 2).mean()
    full = fit_linear_map(x_out, y_out, "ols")  # 2000 rows spread along every direction...
    assert full.rank == 10  # ...but the near-dead ones still below the cutoff
    assert not fit_linear_map(*planted(n=20, dx=6)[:2], "ols").rank_deficient


def test_the_authors_ridge_equals_a_full_batch_optimisation_of_their_keras_objective():
    """mse loss + L2(l2) on the kernel + L2(l2) on the outputs divided by the batch size (how
    Keras applies an activity regularizer), minimised by L-BFGS in float64."""
    import torch

    rng = np.random.default_rng(7)
    x = rng.normal(size=(16, 6)) * rng.uniform(0.2, 2, 6)
    y = x @ rng.normal(size=(6, 5)) + 0.3 * rng.normal(size=(16, 5))
    l2 = 0.05  # large enough that the penalties shape the answer
    X, Y = torch.tensor(x), torch.tensor(y)
    W = torch.zeros(6, 5, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W], lr=1, max_iter=500, tolerance_grad=1e-14,
                            tolerance_change=1e-16, line_search_fn="strong_wolfe")

    def objective():
        opt.zero_grad()
        out = X @ W
        loss = ((Y - out) ** 2).mean() + l2 * (W**2).sum() + l2 * (out**2).sum() / len(X)
        loss.backward()
        return loss

    opt.step(objective)
    m = fit_linear_map(x, y, "ridge_authors", l2=l2)
    np.testing.assert_allclose(m.A, W.detach().numpy(), atol=1e-4)
    assert np.abs(m.A - fit_linear_map(x, y, "ridge", lam=l2).A).max() > 1e-2  # not `ridge`


def test_lstsq_ortho_is_orthogonal_between_standardised_spaces_and_finds_a_rotation():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(3000, 5))
    x = x - x.mean(0)
    x = x @ np.linalg.inv(np.linalg.cholesky(x.T @ x / len(x))).T  # white: cov exactly I
    q = np.linalg.qr(rng.normal(size=(5, 5)))[0]
    y = x @ q * 0.7 - 2  # standardised, exactly the rotated x
    x = x * rng.uniform(0.5, 2, 5) + 1  # scales and shifts that standardisation removes
    m = fit_linear_map(x, y, "lstsq_ortho")
    r = m.A * x.std(0)[:, None] / y.std(0)[None, :]  # back in the standardised spaces
    np.testing.assert_allclose(r.T @ r, np.eye(5), atol=1e-9)
    np.testing.assert_allclose(r, q, atol=1e-9)
    np.testing.assert_allclose(m(x), y, atol=1e-9)
    shear = np.eye(5) + np.triu(np.full((5, 5), 0.8), 1)  # no isometry, standardised or not
    skew = x @ shear
    ols, ortho = fit_linear_map(x, skew, "ols"), fit_linear_map(x, skew, "lstsq_ortho")
    assert ((ortho(x) - skew) ** 2).mean() > 10 * ((ols(x) - skew) ** 2).mean() + 1e-12


def test_estimators_take_the_parameters_they_declare():
    x, y, _, _ = planted(noise=0.1, seed=2)
    both = dict(lam=3.0, l2=1e-3)
    assert np.array_equal(fit_linear_map(x, y, "ridge", **both).A,
                          fit_linear_map(x, y, "ridge", lam=3.0).A)
    assert np.array_equal(fit_linear_map(x, y, "ridge_authors", **both).A,
                          fit_linear_map(x, y, "ridge_authors", l2=1e-3).A)
    assert np.array_equal(fit_linear_map(x, y, "ols", **both).A, fit_linear_map(x, y, "ols").A)


def write_shards(out, codes, cuts, row_group_size, shuffle_seed):
    """An encoding whose shards hold the index ranges between `cuts`, rows shuffled within
    each shard, several row groups per shard."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from ray.data.extensions import ArrowTensorArray

    from latentatlas.encode.store import EncodingMeta, open_encoding, publish, temp_sibling

    tmp = temp_sibling(out)
    tmp.mkdir()
    rng = np.random.default_rng(shuffle_seed)
    for i, (a, b) in enumerate(zip(cuts[:-1], cuts[1:], strict=True)):
        index = rng.permutation(np.arange(a, b))
        table = pa.table({"index": index, "mu": ArrowTensorArray.from_numpy(codes[index])})
        pq.write_table(table, tmp / f"{i:03d}.parquet", row_group_size=row_group_size)
    publish(tmp, out, EncodingMeta("m", None, "synthetic", "all", None, None, len(codes),
                                   codes.shape[1], "test"))
    return open_encoding(out)


def test_streaming_fit_over_parquet_equals_the_in_memory_fit(ray_session, tmp_path):
    """Two encodings of 1000 rows with different, uneven shard layouts and shuffled rows,
    read in index ranges that cut across shards and row groups."""
    from analysis.pairs import HOLDOUT_EVERY, read_rows, split_mask, streaming_stats

    x, y, _, _ = planted(n=1000, noise=0.2, seed=4)
    src = write_shards(tmp_path / "src", x.astype(np.float32), [0, 7, 300, 301, 650, 1000],
                       row_group_size=64, shuffle_seed=1)
    tgt = write_shards(tmp_path / "tgt", y.astype(np.float32), [0, 500, 1000],
                       row_group_size=100, shuffle_seed=2)
    assert len(src.row_groups()) > len(src.shards())
    fit = split_mask(np.arange(1000), "fit", HOLDOUT_EVERY)
    expected = SufficientStats.of(x.astype(np.float32)[fit], y.astype(np.float32)[fit])
    streamed = streaming_stats(src, tgt, part="fit", per_task=137)
    assert streamed.n == expected.n == 800
    for key in ("sx", "sy", "sxx", "sxy", "syy"):
        np.testing.assert_allclose(getattr(streamed, key), getattr(expected, key), rtol=1e-12)
    rows = read_rows(src.row_groups(), ["mu"], 290, 660, np.array([5, 299, 300, 301, 659, 660]))
    assert rows["index"].tolist() == [299, 300, 301, 659]
    np.testing.assert_array_equal(rows["mu"], x.astype(np.float32)[[299, 300, 301, 659]])
