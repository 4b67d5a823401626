import itertools

import numpy as np
import pytest

from analysis.sectors import (
    NO_SECTOR,
    effective_k,
    mean_pairwise_mse,
    random_pairs_mse,
    sector_counts,
    sector_ids,
    sector_signs,
    sector_variables,
    select_support,
)


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


def test_k_is_reduced_to_the_active_variables():
    assert effective_k(7, 5) == 5 and effective_k(7, 13) == 7 and effective_k(7, 0) == 1
    score = np.array([0.1, 9.0, 0.5, 0.3, 0.2])  # variable 1 scores best but is dead
    var_mu = np.array([1.0, 0.001, 0.8, 0.02, 0.005])
    assert sector_variables(score, var_mu, 7).tolist() == [2, 3, 0]
    assert sector_variables(score, var_mu, 2).tolist() == [2, 3]


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
