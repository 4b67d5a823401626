import itertools

import numpy as np
import pytest

from analysis.sectors import (
    NO_SECTOR,
    effective_k,
    random_pairs_mse,
    sector_counts,
    sector_ids,
    sector_signs,
    sector_variables,
    select_support,
)
from latentatlas.images import mean_pairwise_mse


def test_sector_ids_on_hand_made_codes():
    z = np.array([[1.0, -2.0, 0.0],   # var 0 +, var 1 -: bits 0b01 -> 1
                  [-0.6, 0.7, 9.0],   # - + -> 0b10 -> 2
                  [0.4, 3.0, 0.0],    # |z0| <= 0.5: in the band, no sector
                  [0.5, 3.0, 0.0],    # exactly at the threshold: still no sector
                  [-3.0, -3.0, 1.0],  # - - -> 0
                  [2.0, 2.0, -5.0]])  # + + -> 3
    ids = sector_ids(z, [0, 1], 0.5)
    assert ids.tolist() == [1, 2, NO_SECTOR, NO_SECTOR, 0, 3]
    assert sector_ids(z, [1, 0], 0.5)[:2].tolist() == [2, 1]  # order decides the bits
    assert sector_signs(1, 2) == "+-" and sector_signs(2, 2) == "-+"


def test_counts_cover_all_sectors_and_sum_to_the_codes_outside_the_band():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5000, 5))
    ids = sector_ids(z, [0, 1, 2], 0.5)
    counts = sector_counts(ids, 3)
    assert len(counts) == 8
    outside = (np.abs(z[:, :3]) > 0.5).all(axis=1).sum()
    assert counts.sum() == outside
    for s in range(8):  # each sector by brute force from its sign pattern
        signs = np.array([1 if c == "+" else -1 for c in sector_signs(s, 3)])
        assert counts[s] == ((z[:, :3] * signs > 0.5).all(axis=1)).sum()


def test_sector_variables_are_active_by_asperti_rule_and_k_shrinks_to_them():
    assert effective_k(7, 5) == 5 and effective_k(7, 13) == 7 and effective_k(7, 0) == 1
    score = np.array([0.1, 9.0, 0.5, 0.3, 0.2, 0.4])
    var_mu = np.array([1.0, 0.001, 0.8, 0.02, 0.05, 0.9])
    sigma2 = np.array([0.1, 0.99, 0.2, 0.9, 0.3, 0.97])
    # 1: dead; 3: var(mu) = 0.02 passes Burda's test (> 0.01) but not Asperti's (>= 0.05), and
    # its sd of 0.14 would leave every sector empty; 5: mean sigma^2 > 0.95
    assert sector_variables(score, var_mu, sigma2, 7).tolist() == [2, 4, 0]
    assert sector_variables(score, var_mu, sigma2, 2).tolist() == [2, 4]


def test_sectors_on_a_burda_active_but_weak_variable_would_be_empty():
    """Why the rule matters: with var(mu) = 0.02 among the k variables, hardly any code
    lies in any sector, and the note says so with the variables' spread."""
    from analysis.sectors import few_in_sectors_note

    rng = np.random.default_rng(1)
    z = rng.normal(size=(20_000, 3)) * np.sqrt([1.0, 1.0, 0.02])
    in_sectors = (sector_ids(z, [0, 1, 2], 0.5) >= 0).mean()
    assert in_sectors < 0.01
    note = few_in_sectors_note(in_sectors, 0.5, z.std(0))
    assert "0.14" in note and "|z| > 0.5" in note
    assert few_in_sectors_note((sector_ids(z, [0, 1], 0.5) >= 0).mean(), 0.5, z.std(0)[:2]) \
        is None


def test_gaussian_sector_probabilities_are_orthant_products():
    from analysis.sectors import gaussian_sector_probabilities

    mean, sd, t = np.array([0.3, -0.2, 0.0]), np.array([1.0, 0.5, 2.0]), 0.5
    p = gaussian_sector_probabilities(mean, sd, t)
    rng = np.random.default_rng(2)
    z = rng.normal(size=(400_000, 3)) * sd + mean
    empirical = sector_counts(sector_ids(z, [0, 1, 2], t), 3) / len(z)
    np.testing.assert_allclose(p, empirical, atol=2e-3)
    from scipy.stats import norm  # sector 0b101: z0 > t, z1 < -t, z2 > t

    want = norm.sf((t - 0.3) / 1.0) * norm.cdf((-t + 0.2) / 0.5) * norm.sf(t / 2.0)
    assert p[0b101] == pytest.approx(want, rel=1e-12)


def test_density_tells_unevenness_from_sampling_noise():
    """Isotropic Gaussian codes: KL to the reference within sampling noise, chi-square not
    rejected. Clustered codes (a mixture that leaves sectors empty): far beyond the noise."""
    from analysis.sectors import density_vs_gaussian, gaussian_sector_probabilities

    rng = np.random.default_rng(3)
    k, t = 5, 0.5
    gauss = rng.normal(size=(10_000, k))
    centres = rng.choice([-1.2, 1.2], size=(6, k))
    clustered = centres[rng.integers(0, 6, 10_000)] + 0.4 * rng.normal(size=(10_000, k))
    verdicts = []
    for z in (gauss, clustered):
        ids = sector_ids(z, range(k), t)
        p = gaussian_sector_probabilities(z.mean(0), z.std(0), t)
        d = density_vs_gaussian(sector_counts(ids, k), int((ids < 0).sum()), p, seed=0)
        verdicts.append(d)
    assert verdicts[0]["kl_to_gaussian"] <= verdicts[0]["kl_gaussian_p99"]
    assert verdicts[0]["chi2_pvalue"] > 0.001
    assert verdicts[1]["kl_to_gaussian"] > 10 * verdicts[1]["kl_gaussian_p99"]
    assert verdicts[1]["chi2_pvalue"] < 1e-10


def test_density_against_the_prior_is_an_effect_size_beyond_noise():
    """Codes drawn from the prior: their total variation to its occupancy within sampling
    noise and far under 0.1. Every code in one sector: the closed form 1 - P(that sector).
    Shrunk codes (sd 0.5, as a VAE's means): most codes leave the sectors."""
    from scipy.stats import norm

    from analysis.sectors import density_vs_prior

    rng = np.random.default_rng(4)
    k, t = 4, 0.5
    prior = rng.normal(size=(10_000, k))
    ids = sector_ids(prior, range(k), t)
    d = density_vs_prior(sector_counts(ids, k), int((ids < 0).sum()), k, t)
    assert d["tv_to_prior"] < 0.05 and d["tv_to_prior"] <= 1.5 * d["tv_prior_p99"]
    assert d["prior_in_sectors"] == pytest.approx(2 ** k * norm.cdf(-t) ** k)
    one = np.zeros(2 ** k)
    one[5] = 1000
    assert density_vs_prior(one, 0, k, t)["tv_to_prior"] == pytest.approx(
        1 - norm.cdf(-t) ** k)
    shrunk = 0.5 * rng.normal(size=(10_000, k))
    ids = sector_ids(shrunk, range(k), t)
    d = density_vs_prior(sector_counts(ids, k), int((ids < 0).sum()), k, t)
    assert d["tv_to_prior"] > 0.1 and d["tv_to_prior"] > 5 * d["tv_prior_p99"]


def test_support_set_one_per_sector_then_fill_from_the_crowded():
    ids = np.array([0] * 10 + [1] * 5 + [2] * 1 + [NO_SECTOR] * 4 + [3] * 2)
    sel = select_support(ids, 4, seed=1)
    assert len(sel) == 4 and sorted(ids[sel].tolist()) == [0, 1, 2, 3]  # one each
    sel = select_support(ids, 7, seed=1)
    assert len(sel) == 7 and len(set(sel.tolist())) == 7
    first = ids[sel[:4]].tolist()
    assert sorted(first) == [0, 1, 2, 3]  # no sector twice before the fill
    assert ids[sel[4:]].tolist() == [0, 1, 3]  # fill: most crowded first, in turn
    assert NO_SECTOR not in ids[sel].tolist()
    np.testing.assert_array_equal(select_support(ids, 7, seed=1), sel)  # deterministic
    assert not np.array_equal(select_support(ids, 7, seed=2), sel)


def test_support_set_respects_exclusions_and_size_limits():
    ids = np.array([0, 0, 1, 1, 2])
    hat = np.array([1, 0, 1, 0, 1])  # rows wearing a hat
    sel = select_support(ids, 5, eligible=hat == 0)
    assert set(sel.tolist()) == {1, 3}  # only two eligible rows exist
    assert len(select_support(ids, 2)) == 2
    many = np.arange(10)  # ten sectors, room for 4: the four most crowded (ties by id)
    assert sorted(ids_ := many[select_support(many, 4)]) == [0, 1, 2, 3] and len(ids_) == 4


def test_pairwise_mse_closed_form_matches_brute_force():
    rng = np.random.default_rng(3)
    x = rng.random((9, 1, 4, 4))
    brute = np.mean([((a - b) ** 2).mean() for a, b in itertools.combinations(x, 2)])
    assert mean_pairwise_mse(x) == pytest.approx(brute, rel=1e-12)
    # Random pairs of identical images are 0; of two distinct images, their MSE.
    assert random_pairs_mse(np.zeros((5, 3)), 10) == 0.0
    two = np.array([[0.0, 0.0], [1.0, 1.0]])
    assert random_pairs_mse(two, 7) == 1.0


def test_the_seeds_size_seven_of_150_variables_128_sectors_a_150_row_support_set():
    """The seed's setting on synthetic codes: 150 variables of which 10 are active (N(0, 1),
    scored in a known order) and 140 inactive (var(mu) 1e-4, mean sigma^2 1); k = 7 takes
    the 7 best active ones, even where an inactive variable scores higher; 60,000 codes fill
    all 128 sectors; the support set has one member in each, then 22 more, 150 distinct."""
    rng = np.random.default_rng(0)
    n, d = 60_000, 150
    active = rng.permutation(d)[:10]
    z = (rng.normal(size=(n, d)) * 0.01).astype(np.float32)
    z[:, active] = rng.normal(size=(n, 10))
    var_mu, sigma2 = z.var(axis=0), np.ones(d)
    sigma2[active] = 0.1
    score = np.zeros(d)
    score[active] = np.arange(10, 0, -1)  # active[0] the most informative
    score[np.setdiff1d(np.arange(d), active)[0]] = 100.0  # an inactive one scores higher
    variables = sector_variables(score, var_mu, sigma2, 7)
    assert variables.tolist() == active[:7].tolist()
    ids = sector_ids(z, variables, 0.5)
    counts = sector_counts(ids, len(variables))
    assert len(counts) == 128 and (counts > 0).all()
    sel = select_support(ids, 150, seed=0)
    assert len(sel) == len(set(sel.tolist())) == 150
    assert sorted(ids[sel[:128]].tolist()) == list(range(128))  # one per sector first
    assert NO_SECTOR not in ids[sel].tolist()
