"""Linear maps against planted truths, numpy's lstsq and scipy's orthogonal_procrustes."""

import re

import numpy as np
import pytest
import scipy.linalg
import torch

from analysis.linear_maps import (
    ESTIMATORS,
    FIELD_TRANSLATORS,
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


def test_latentis_translators_fit_from_streamed_statistics_as_from_the_rows():
    """latentis' translators need only the statistics (their scales included), so seven
    uneven blocks give the rows' map; the relative translator needs the rows themselves."""
    x, y, _, _ = planted(n=1000, noise=0.2, seed=3)
    cuts = [0, 1, 50, 51, 333, 600, 999, 1000]
    parts = [SufficientStats.of(x[a:b], y[a:b]) for a, b in zip(cuts[:-1], cuts[1:],
                                                                 strict=True)]
    streamed = sum(parts[1:], parts[0])
    for name, e in FIELD_TRANSLATORS.items():
        if e.rows:
            with pytest.raises(KeyError):
                fit_from_stats(streamed, name)
            continue
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


def write_shards(out, codes, cuts, row_group_size, shuffle_seed, columns=None, **meta):
    """An encoding whose shards hold the index ranges between `cuts`, rows shuffled within
    each shard, several row groups per shard; `columns` (name -> per-row array) beside
    `mu`, `meta` (EncodingMeta fields) over a synthetic dataset's."""
    import dataclasses

    import pyarrow as pa
    import pyarrow.parquet as pq
    from ray.data.extensions import ArrowTensorArray

    from latentatlas.encode.store import EncodingMeta, open_encoding, publish, temp_sibling

    tmp = temp_sibling(out)
    tmp.mkdir()
    rng = np.random.default_rng(shuffle_seed)
    every = {"mu": codes, **(columns or {})}
    for i, (a, b) in enumerate(zip(cuts[:-1], cuts[1:], strict=True)):
        index = rng.permutation(np.arange(a, b))
        table = pa.table({"index": index, **{
            k: ArrowTensorArray.from_numpy(v[index]) if v.ndim > 1 else v[index]
            for k, v in every.items()}})
        pq.write_table(table, tmp / f"{i:03d}.parquet", row_group_size=row_group_size)
    publish(tmp, out, dataclasses.replace(
        EncodingMeta("m", None, "synthetic", "all", None, None, len(codes), codes.shape[1],
                     "test"), **meta))
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


class LinearImages(torch.nn.Module):
    """A toy generator: z ~ N(0, I) (3-d) drawn from the seeded stream, G(z) = 0.5 + 0.02 z W
    as 1x4x4 images (inside [0, 1] for any z it draws, so clamping changes nothing)."""

    latent_dim = 3

    def __init__(self):
        super().__init__()
        self.w = torch.from_numpy(np.random.default_rng(0).normal(size=(3, 16))).float()

    def sample_codes(self, n, generator=None):
        return torch.randn(n, self.latent_dim, generator=generator)

    def decode(self, z):
        return (0.5 + 0.02 * z @ self.w).reshape(-1, 1, 4, 4)


class LinearEncoder(torch.nn.Module):
    """A toy VAE's encoder, exactly linear in the pixels: mu = (x - 0.5) P (5-d)."""

    def __init__(self):
        super().__init__()
        self.p = torch.from_numpy(np.random.default_rng(1).normal(size=(16, 5))).float()

    def encode(self, x):
        mu = (x.flatten(1) - 0.5) @ self.p
        return mu, torch.zeros_like(mu)


def toy_encoding(family: str, path: str = "enc", style_based: bool = False):
    from pathlib import Path

    from latentatlas.encode.store import Encoding, EncodingMeta

    return Encoding(Path(path), EncodingMeta("m", None, "synthetic", "all", None, None, 10, 3,
                                             "test", family=family, style_based=style_based))


def test_generated_pairs_are_the_generators_codes_and_the_vaes_means_of_their_images():
    """2500 pairs in batches of 1000 (the last one short): z from the seeded prior, mu(G(z))
    row for row; the relation is linear (mu = 0.02 z W P), and the fits recover it."""
    from analysis.studies.maps import fit_on_pairs, generated_fit_pairs, generated_pairs

    generator, vae = LinearImages(), LinearEncoder()
    z, mu = generated_pairs(generator, vae, 2500, seed=3, batch=1000)
    assert z.shape == (2500, 3) and mu.shape == (2500, 5)
    assert z.dtype == mu.dtype == np.float32
    with torch.no_grad():
        by_row = vae.encode(generator.decode(torch.from_numpy(z)))[0].numpy()
    np.testing.assert_allclose(mu, by_row, atol=1e-6)
    again, _ = generated_pairs(generator, vae, 2500, seed=3, batch=1000)
    assert np.array_equal(again, z)  # seeded
    assert not np.array_equal(generated_pairs(generator, vae, 2500, seed=4)[0], z)
    planted_map = 0.02 * generator.w.numpy().astype(np.float64) @ vae.p.numpy()
    np.testing.assert_allclose(fit_linear_map(z, mu, "ols_nobias").A, planted_map, atol=1e-5)
    fitted = fit_on_pairs(z, mu, ["ridge_authors", "ols"], {"lam": 1e-4, "l2": 0.0015})
    np.testing.assert_array_equal(fitted["ridge_authors"].A,
                                  fit_linear_map(z, mu, "ridge_authors", l2=0.0015).A)
    np.testing.assert_allclose(fitted["ols"].A, planted_map, atol=1e-5)
    # The map's direction: z -> mu from a generator source, mu -> z onto a generator target.
    z, mu = generated_pairs(generator, vae, 50, seed=3)
    for got, want in ((generated_fit_pairs(toy_encoding("gan"), generator, vae, 50, 3), (z, mu)),
                      (generated_fit_pairs(toy_encoding("vae"), vae, generator, 50, 3), (mu, z))):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_the_default_recipe_is_the_authors_for_the_pair():
    """comparison.py: a style generator's W with a VAE by transform_from_W (generated pairs,
    no L2, scored on generated images); every other pair, a vanilla GAN through its recoder
    included, by transform_with_support (the support set, their L2, real images)."""
    from analysis.linear_maps import authors_l2
    from analysis.studies.maps import Recipe, authors_recipe, default_fit, resolve_fit
    from latentatlas.errors import UserError

    vae, gan = toy_encoding("vae", "a.enc"), toy_encoding("gan", "b.enc")
    style = toy_encoding("gan", "s.enc", style_based=True)
    assert authors_recipe(style.meta, vae.meta) == authors_recipe(vae.meta, style.meta) == \
        Recipe("generated", 0.0, "generated", "transform_from_W")
    assert authors_recipe(gan.meta, vae.meta) == authors_recipe(vae.meta, gan.meta) == \
        Recipe("support", 0.0015, "held_out", "transform_with_support")
    assert authors_recipe(vae.meta, vae.meta) == Recipe("support", 1e-4, "held_out",
                                                        "transform_with_support")
    assert default_fit(style.meta, style.meta) == "support"  # no VAE side: no generated pairs
    assert authors_l2("vae", "vae") == 1e-4
    assert authors_l2("gan", "vae") == authors_l2("vae", "gan") == authors_l2("gan", "gan") \
        == 0.0015
    assert resolve_fit(vae, gan, None) == "support" and resolve_fit(vae, style, None) == \
        "generated"
    # an encoding written before they said: its model decides
    from latentatlas.encode.store import EncodingMeta

    older = EncodingMeta.from_json({k: v for k, v in gan.meta.to_json().items()
                                    if k != "style_based"}, gan.path)
    assert older.style_based is None
    assert authors_recipe(older, vae.meta).fit == "support"
    assert authors_recipe(older, vae.meta, LinearImages()).fit == "support"
    mapped = LinearImages()
    mapped.style_based = True
    assert authors_recipe(older, vae.meta, mapped) == Recipe("generated", 0.0, "generated",
                                                             "transform_from_W")
    assert resolve_fit(gan, vae, "all") == "all"
    with pytest.raises(UserError) as refused:
        resolve_fit(vae, toy_encoding("vae", "c.enc"), "generated")
    assert str(refused.value) == ("--fit generated: needs one generator side and one VAE "
                                  "side; a.enc is a VAE's encoding, c.enc is a VAE's encoding")
    with pytest.raises(UserError, match="b.enc is a generator's encoding, b.enc is a "
                                        "generator's encoding"):
        resolve_fit(gan, gan, "generated")
    with pytest.raises(UserError, match="--fit some: expected one of all, support, indices, "
                                        "generated"):
        resolve_fit(vae, gan, "some")


def test_the_verbs_fit_options_are_the_steps_counted_as_its_fit_needs():
    """`--fit generated --pairs N`, `--fit random --rows N`: the relocate step's options,
    parsed by the verb into the same model; a count without its fit, or out of bounds, is one
    line naming the flag."""
    from jobs.kinds.relocate import RelocateOptions
    from jobs.options import options_of
    from jobs.relocate import FLAGS, main
    from latentatlas.errors import UserError

    def parsed(*flags):
        import argparse

        from jobs.options import add_options

        p = argparse.ArgumentParser()
        add_options(p, RelocateOptions, flags=FLAGS)
        return options_of(p.parse_args(list(flags)), RelocateOptions, flags=FLAGS)

    assert parsed() == RelocateOptions()  # the pair's default fit, the default counts
    assert parsed("--fit", "generated", "--pairs", "500").fitting()["pairs"] == 500
    o = parsed("--fit", "random", "--rows", "150", "--estimator", "ols", "--estimator", "ridge")
    assert (o.fitting()["random_rows"], o.estimators) == (150, ["ols", "ridge"])
    for bad, says in ((["--fit", "support", "--pairs", "5"],
                       "pairs (the number of generated pairs) needs fit: generated"),
                      (["--rows", "5"], "rows (the number of random rows) needs fit: random"),
                      (["--fit", "generated", "--pairs", "0"],
                       "--pairs 0: Input should be greater than 0"),
                      (["--fit", "random", "--rows", "-3"],
                       "--rows -3: Input should be greater than 0")):
        with pytest.raises(UserError, match=re.escape(says)):
            parsed(*bad)
    with pytest.raises(SystemExit):  # argparse's own line: an unknown fit
        main(["--fit", "everything"])


def test_the_verb_refuses_a_generated_fit_between_two_vaes_in_one_line(workdir, capsys):
    from jobs import relocate as relocate_verb

    codes = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    paths = [str(write_shards(workdir / name, codes, [0, 20], 10, 0).path)
             for name in ("a.enc", "b.enc")]
    code = relocate_verb.main(["--source", paths[0], "--target", paths[1], "--fit",
                               "generated", "--tracking-uri",
                               f"sqlite:///{workdir}/mlflow.db"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[0] == (f"error: --fit generated: needs one generator side and one VAE side; "
                      f"{paths[0]} is a VAE's encoding, {paths[1]} is a VAE's encoding")
    # where a Ray of this process has written its own messages, the one line points there
    assert all(line.startswith("Ray's own messages: ") for line in err[1:]), err


@pytest.fixture(scope="module")
def vae_and_gan(tmp_path_factory):
    """A dense VAE (4-d) and a DCGAN (3-d), untrained, on a 100-image MNIST-format test
    split, with encodings of it: the VAE's codes Gaussian (variables active, sd 1), the
    GAN's a planted linear function of them plus noise."""
    from conftest import make_idx_dataset

    from latentatlas.config import DCGANConfig, DenseVAEConfig
    from latentatlas.data import load_split
    from latentatlas.models import build_model

    root = tmp_path_factory.mktemp("vae-gan")
    data = str(make_idx_dataset(root / "idx", n_train=4, n_test=100))
    split = load_split("mnist", "test", data)
    models = {}
    for family, cfg in (("vae", DenseVAEConfig(hidden=[8], latent_dim=4)),
                        ("gan", DCGANConfig(latent_dim=3, channels=[8, 4]))):
        torch.manual_seed(0)
        models[family] = (build_model(cfg, (1, 28, 28)).eval(),
                          {"model": cfg.model_dump(), "input_shape": [1, 28, 28]})
    rng = np.random.default_rng(2)
    mu = rng.normal(size=(100, 4)).astype(np.float32)
    gan_codes = (mu @ rng.normal(size=(4, 3)) + 0.1 * rng.normal(size=(100, 3))).astype(
        np.float32)
    meta = dict(dataset="mnist", split="test", data_path=data, input_shape=(1, 28, 28))
    vae_enc = write_shards(root / "vae.enc", mu, [0, 37, 100], 16, 0,
                           {"label": split.labels, "logvar": np.full_like(mu, -2.0)},
                           family="vae", **meta)
    gan_enc = write_shards(root / "gan.enc", gan_codes, [0, 100], 16, 1,
                           {"label": split.labels}, family="gan", latent_dim=3, **meta)
    return vae_enc, gan_enc, models


def test_ols_on_all_fit_rows_is_logged_beside_every_fit(vae_and_gan):
    """Every fit mode logs OLS with a bias on all 80 fit rows (`ols_full`, not among the
    estimators here), the same number whatever the headline fit; relocation/M is the first
    estimator on the fit's rows, named once; the authors' l2 for a GAN side is 0.0015."""
    from analysis.studies.maps import FITS, generated_pairs, relocate_codes
    from jobs.relocate import headline

    vae_enc, gan_enc, models = vae_and_gan
    estimators = ["ridge_authors", "ols_nobias"]
    out = {fit: relocate_codes(vae_enc, gan_enc, models["vae"], models["gan"],
                               estimators=estimators, fit=fit, pairs=300,
                               indices=np.arange(1, 60, 3))
           for fit in FITS}
    full = out["all"].metrics["relocation/M_ols_full"]
    for fit, moved in out.items():
        m = moved.metrics
        assert m["relocation/M_ols_full"] == pytest.approx(full, rel=1e-9), fit
        assert "relocation/L_ols_full" in m and "relocation/M_ols" not in m
        assert moved.params["l2"] == 0.0015
        first = {"all": "ridge_authors_full",
                 "random": "ridge_authors_random"}.get(fit, "ridge_authors")
        assert m["relocation/M"] == m[f"relocation/M_{first}"]
        assert m["relocation/L"] == m[f"relocation/L_{first}"]
        for e in estimators:
            assert f"relocation/M_{e}_full" in m
        record = moved.record()
        assert record.params["headline_estimator"] == "ridge_authors"
        assert record.params["headline_fit"] == fit
        assert record.params["ridge_authors_l2"] == 0.0015
        assert ("generated_pairs" in record.params) == (fit == "generated")
        assert ("random_rows" in record.params) == (fit == "random")
        # what drew the fit's rows is in the run, so a draw can be made again
        assert record.params.get("seed") == (0 if fit in ("support", "random", "generated")
                                             else None)
        if fit != "all":
            table = record.tables[f"{fit}_vs_full.json"]
            assert table[f"M_{fit}"][0] == m["relocation/M"]
            assert table["M_full"][0] == m["relocation/M_ridge_authors_full"]
    assert set(out["all"].maps) == {"ridge_authors_full", "ols_nobias_full", "ols_full"}
    assert out["all"].metrics["relocation/fit_rows"] == 80
    assert out["indices"].metrics["relocation/fit_rows"] == 20
    assert out["support"].metrics["relocation/fit_rows"] == 4
    assert out["generated"].metrics["relocation/fit_rows"] == 300
    assert out["generated"].record().params["generated_pairs"] == 300
    said = headline(out["generated"]).splitlines()  # what the verb prints
    assert said[0] == "headline: ridge_authors on 300 generated pairs"
    assert said[1].startswith("M ") and f"M_ols_full {full:.4g}" in said[1]
    # the generated fit maps the VAE's means of G(z) onto z: the pairs it drew (seed 0)
    z, mu = generated_pairs(models["gan"][0], models["vae"][0], 300)
    np.testing.assert_allclose(out["generated"].maps["ols_nobias"].A,
                               fit_linear_map(mu, z, "ols_nobias").A, atol=1e-8)


def test_a_random_fit_recovers_a_planted_map_from_n_seeded_fit_rows(tmp_path):
    """`--fit random N`: N distinct rows, none held out (index % 5 == 0), drawn with the
    seed (the same rows again with it, others with another seed); on a planted exact map
    the fit on those N rows alone is the map, named <estimator>_random, and the rows differ
    from a support set of the same size."""
    from analysis.pairs import split_mask
    from analysis.studies.maps import fit_maps, headline_map, random_fit_rows
    from analysis.studies.sectors import count_sectors, support_rows
    from latentatlas.errors import UserError

    x, y, A, _ = planted(n=1000, dx=6, dy=4, bias=False, seed=9)
    src = write_shards(tmp_path / "src", x.astype(np.float32), [0, 400, 1000], 64, 0,
                       {"logvar": np.full((1000, 6), -2.0, np.float32)})
    tgt = write_shards(tmp_path / "tgt", y.astype(np.float32), [0, 1000], 100, 1)
    index = np.arange(1000)
    rows = random_fit_rows(index, 150, seed=3)
    assert len(rows) == len(set(rows.tolist())) == 150
    assert split_mask(rows, "fit").all()
    np.testing.assert_array_equal(random_fit_rows(index, 150, seed=3), rows)
    assert not np.array_equal(random_fit_rows(index, 150, seed=4), rows)
    with pytest.raises(UserError, match=r"--fit random 801: expected 1 to 800 rows"):
        random_fit_rows(index, 801)
    maps, n, sweep = fit_maps(src, tgt, ["ols_nobias", "ridge_authors"], "random",
                              params={"l2": 1e-4}, seed=3, random_rows=150)
    assert n == 150 and sweep == []
    assert set(maps) == {"ols_nobias_random", "ridge_authors_random", "ols_nobias_full",
                         "ridge_authors_full", "ols_full"}
    np.testing.assert_allclose(maps["ols_nobias_random"].A, A, atol=1e-4)
    expected = fit_linear_map(x.astype(np.float32)[rows], y.astype(np.float32)[rows],
                              "ridge_authors", l2=1e-4)
    np.testing.assert_allclose(maps["ridge_authors_random"].A, expected.A, rtol=1e-6)
    assert headline_map("random", ["ridge_authors"]) == "ridge_authors_random"
    # a support set of the same size among the same fit rows (3 sectors' variables): others
    support, _, _ = support_rows(count_sectors(src, np.arange(6.0), k=3), 150, seed=3,
                                 eligible_index=lambda i: split_mask(i, "fit"))
    assert len(support) == 150 and set(support.tolist()) != set(rows.tolist())


class LinearVAE(LinearEncoder):
    """LinearEncoder with a decoder: x_hat = 0.5 + mu P^+ (a projection of the pixels)."""

    def decode(self, mu):
        return (0.5 + mu @ torch.linalg.pinv(self.p)).reshape(-1, 1, 4, 4)


def test_generated_scoring_is_the_authors_compute_error_on_w():
    """Scored on fresh generated images x = G(z): the planted map z -> mu (exact) moves codes
    with no error (L 0) and M equal to the VAE's own error; a map to 0 has L = mean(mu^2) and
    M = MSE(x, decode(0)); R through the generator is 0 (G(z) is x)."""
    from analysis.linear_maps import LinearMap
    from analysis.relocation import RESAMPLED, generated_errors

    generator, vae = LinearImages(), LinearVAE()
    planted = 0.02 * generator.w.numpy().astype(np.float64) @ vae.p.numpy()
    zero = np.zeros((3, 5))
    maps = {"planted": LinearMap("ols", planted, np.zeros(5)),
            "zero": LinearMap("ols", zero, np.zeros(5))}
    errors = generated_errors(generator, vae, maps, 700, seed=5, gan_is_source=True, batch=300)
    draw = torch.Generator().manual_seed(5)  # drawn in the same batches
    z = torch.cat([generator.sample_codes(n, draw) for n in (300, 300, 100)])
    with torch.no_grad():
        x = generator.decode(z)
        mu = vae.encode(x)[0]
        own = ((vae.decode(mu) - x) ** 2).flatten(1).mean(1).double()
        blank = ((vae.decode(torch.zeros_like(mu)) - x) ** 2).flatten(1).mean(1).double()
    assert errors["count"].tolist() == [700.0]
    assert errors["R"][0] == pytest.approx(0.0, abs=1e-12)
    assert errors["M_target_own"][0] == pytest.approx(own.mean().item(), rel=1e-6)
    assert errors["M_planted"][0] == pytest.approx(own.mean().item(), rel=1e-4)
    assert errors["L_planted"][0] == pytest.approx(0.0, abs=1e-9)
    assert errors["L_zero"][0] == pytest.approx((mu.double() ** 2).mean().item(), rel=1e-6)
    assert errors["M_zero"][0] == pytest.approx(blank.mean().item(), rel=1e-6)
    # The bootstrap's replicates spread as the mean's standard error, sd / sqrt(n), within
    # the noise of 200 replicates (the sd of an sd estimate ~ 1/sqrt(2 * 200) = 5%).
    replicates = errors[f"{RESAMPLED}M_zero"]
    assert replicates.std() == pytest.approx(blank.std().item() / np.sqrt(700), rel=0.25)
    # The other direction: mu -> z, R through the VAE.
    back = generated_errors(generator, vae, {"zero": LinearMap("ols", zero.T, np.zeros(3))}, 200,
                            seed=5, gan_is_source=False)
    z = generator.sample_codes(200, torch.Generator().manual_seed(5))  # one batch
    with torch.no_grad():
        x = generator.decode(z)
        mu = vae.encode(x)[0]
        own = ((vae.decode(mu) - x) ** 2).flatten(1).mean(1).double()
    assert back["R"][0] == pytest.approx(own.mean().item(), rel=1e-6)
    assert back["M_target_own"][0] == 0.0  # the generator target regenerates its own samples
    assert back["L_zero"][0] == pytest.approx((z.double() ** 2).mean().item(), rel=1e-6)
