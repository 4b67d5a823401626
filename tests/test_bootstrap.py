"""The Poisson bootstrap over items (analysis.bootstrap) and claims judged on it."""

import numpy as np
import pytest

from analysis.bootstrap import (
    percentile_interval,
    poisson_weights,
    resample_means,
    resample_sums,
    resampled_mean,
)


def test_weights_are_poisson_one_and_the_same_for_an_item_wherever_it_is_counted():
    w = poisson_weights(np.arange(50_000), 40)
    # Poisson(1): mean 1, variance 1, P(0) = 1/e; 2e6 draws put each within ~0.3%.
    assert w.mean() == pytest.approx(1.0, abs=0.005)
    assert w.var() == pytest.approx(1.0, abs=0.01)
    assert (w == 0).mean() == pytest.approx(np.exp(-1), abs=0.002)
    np.testing.assert_array_equal(poisson_weights(np.arange(20_000, 30_000), 40),
                                  w[:, 20_000:30_000])


def test_sums_over_any_partition_add_up_to_the_whole():
    rng = np.random.default_rng(0)
    index, v = np.arange(1000), rng.exponential(size=1000)
    whole = resample_sums(index, {"v": v})
    parts = [resample_sums(index[s], {"v": v[s]}) for s in (slice(0, 317), slice(317, 1000))]
    added = {k: parts[0][k] + parts[1][k] for k in whole}
    for k in whole:
        np.testing.assert_allclose(added[k], whole[k], rtol=1e-12)


def test_a_replicate_that_drew_no_item_counts_as_the_whole_set_not_as_zero():
    """One item: about e^-1 of the replicates give it weight 0 and have no mean of their
    own; every replicate's mean is the item's value (each other one is w v / w), also when
    the sums come from two partitions, one of them empty in that replicate."""
    one = resampled_mean(np.array([5.0]))
    assert np.sum(poisson_weights(np.arange(1)) == 0) > 40  # the case is exercised
    np.testing.assert_allclose(one, 5.0, rtol=1e-15)
    index, v = np.arange(3), np.array([1.0, 2.0, 6.0])
    parts = [resample_sums(index[s], {"v": v[s]}) for s in (slice(0, 1), slice(1, 3))]
    means = resample_means({k: parts[0][k] + parts[1][k] for k in parts[0]})["v"]
    w = poisson_weights(index)
    empty = w.sum(axis=1) == 0
    assert empty.any()  # e^-3: about 10 of 200
    np.testing.assert_allclose(means[empty], 3.0)
    np.testing.assert_allclose(means[~empty], (w @ v)[~empty] / w.sum(axis=1)[~empty])


def test_the_interval_covers_a_known_mean_as_often_as_it_says():
    """Exponential items (mean 1): the 95% percentile interval of 200 replicates of n = 400
    covers the true mean in about 95% of 300 independent samples (binomial sd 1.3%)."""
    rng = np.random.default_rng(1)
    covered = []
    for trial in range(300):
        v = rng.exponential(size=400)
        index = np.arange(400) + 400 * trial  # other items, other weights
        lo, hi = percentile_interval(resample_means(resample_sums(index, {"v": v}))["v"])
        covered.append(lo <= 1.0 <= hi)
    assert 0.89 <= np.mean(covered) <= 0.99


def test_a_relocation_claim_is_judged_on_its_items():
    """M / own around the rule's 2x: replicates all below 2x hold, all above fail, and a
    spread across it is inconclusive, whatever the point estimate says; judged again from
    the stored claim, the same."""
    from analysis.claims import FAILS, HOLDS, INCONCLUSIVE, judge, rejudge

    rng = np.random.default_rng(2)
    own = 0.02 + 0.0001 * rng.standard_normal(200)
    numbers = {"M": 0.039, "own": 0.02, "M_ols_full": 0.03}
    cases = [(0.039 + 0.0002 * rng.standard_normal(200), HOLDS),  # within 2x
             (0.039 + 0.004 * rng.standard_normal(200), INCONCLUSIVE),  # straddles 2x
             (0.045 + 0.0002 * rng.standard_normal(200), FAILS)]
    for m, want in cases:
        items = {"M": m, "own": own, "M_ols_full": np.full(200, 0.03)}
        claim = judge("relocation", "a->b", [], numbers, "M vs own", resampled=items)
        assert claim["rule_outcome"] == want
        lo, hi = claim["intervals"]["M"]
        assert lo < np.median(m) < hi
        assert "over the items (95% bootstrap intervals): M [" in claim["summary"]
        again = rejudge(claim)
        assert again["rule_outcome"] == want and again["summary"] == claim["summary"]
