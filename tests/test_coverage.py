"""Precision / recall / density / coverage: the authors' sanity values, a brute-force
cross-check with scipy's distances, and the cases with a known answer."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from analysis.coverage import knn_radii, prdc


def brute_prdc(real, fake, k):
    rr, ff, rf = cdist(real, real), cdist(fake, fake), cdist(real, fake)
    real_r = np.sort(rr, axis=1)[:, k]
    fake_r = np.sort(ff, axis=1)[:, k]
    inside = rf < real_r[:, None]
    return {"precision": inside.any(axis=0).mean(),
            "recall": (rf < fake_r[None, :]).any(axis=1).mean(),
            "density": inside.sum(axis=0).mean() / k,
            "coverage": (rf.min(axis=1) < real_r).mean()}


def test_prdc_matches_a_brute_force_computation():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(300, 7)), rng.normal(0.3, 1.2, size=(250, 7))
    np.testing.assert_allclose(knn_radii(real, 3), np.sort(cdist(real, real), axis=1)[:, 3])
    got, want = prdc(real, fake, k=3), brute_prdc(real, fake, 3)
    assert got == pytest.approx(want, abs=1e-12)


def test_far_apart_sets_have_nothing_in_common_and_a_set_covers_itself():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(200, 4))
    assert prdc(real, real + 100.0, k=5) == {"precision": 0.0, "recall": 0.0,
                                             "density": 0.0, "coverage": 0.0}
    same = prdc(real, real.copy(), k=5)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0


@pytest.mark.slow
def test_the_authors_sanity_values_for_two_gaussian_samples():
    """Naeem et al.: two samples of 10k from N(0, I) in 1000-D, k = 5: P 0.477, R 0.471,
    D 1.056, C 0.974 (RESEARCH.md)."""
    rng = np.random.default_rng(2)
    real = rng.standard_normal((10_000, 1000), dtype=np.float32)
    fake = rng.standard_normal((10_000, 1000), dtype=np.float32)
    got = prdc(real, fake, k=5)
    want = {"precision": 0.477, "recall": 0.471, "density": 1.056, "coverage": 0.974}
    assert got == pytest.approx(want, abs=0.03), got
