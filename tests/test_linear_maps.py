"""Linear maps against planted truths, numpy's lstsq and scipy's orthogonal_procrustes."""

import numpy as np
import pytest
import scipy.linalg

from analysis.linear_maps import ESTIMATORS, LinearMap, SufficientStats, fit_linear_map


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
        a, b = fit_linear_map(x, y, name), ESTIMATORS[name](streamed)
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


def write_shards(out, codes, cuts, row_group_size, shuffle_seed):
    """An encoding whose shards hold the index ranges between `cuts`, rows shuffled within
    each shard, several row groups per shard."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from ray.data.extensions import ArrowTensorArray

    from latentatlas.encode.store import open_encoding, publish, temp_sibling

    tmp = temp_sibling(out)
    tmp.mkdir()
    rng = np.random.default_rng(shuffle_seed)
    for i, (a, b) in enumerate(zip(cuts[:-1], cuts[1:], strict=True)):
        index = rng.permutation(np.arange(a, b))
        table = pa.table({"index": index, "mu": ArrowTensorArray.from_numpy(codes[index])})
        pq.write_table(table, tmp / f"{i:03d}.parquet", row_group_size=row_group_size)
    publish(tmp, out, {"model_uri": "m", "model_run_id": None, "dataset": "synthetic",
                       "split": "all", "data_path": None, "limit": None, "rows": len(codes),
                       "latent_dim": codes.shape[1], "version": "test"})
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
