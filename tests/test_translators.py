"""The translator study's parts against references written out here: linear CKA as HSIC of
Gram matrices, SVCCA as SVD then QR canonical correlations, farthest-point sampling by its
definition, the authors' Adam fit against torch's Adam on their objective, Procrustes on a
planted rotation, and the study's summaries on hand-made rows."""

import numpy as np
import pytest
import torch

from analysis.anchors import farthest_point_rows, random_rows
from analysis.linear_maps import SufficientStats, adam_authors, fit_translators, ridge_authors
from analysis.similarity import canonical_correlations, linear_cka, svcca
from analysis.studies.translators import TranslatorStudy


def planted(n=300, dx=6, dy=5, noise=0.3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dx)) * rng.uniform(0.3, 2, dx) + rng.normal(size=dx)
    y = x @ rng.normal(size=(dx, dy)) + noise * rng.normal(size=(n, dy)) + 1.5
    return x, y


def cka_reference(x, y):
    """Kornblith et al.'s definition: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)), K = XX^T,
    L = YY^T, HSIC(K, L) = tr(K H L H) with the centring matrix H."""
    n = len(x)
    h = np.eye(n) - 1 / n
    k, l_ = x @ x.T, y @ y.T
    hsic = lambda a, b: np.trace(a @ h @ b @ h)  # noqa: E731
    return hsic(k, l_) / np.sqrt(hsic(k, k) * hsic(l_, l_))


def svcca_reference(x, y, keep=0.99):
    """Raghu et al.: SVD of each centred side, the top directions holding `keep` of the
    variance, then CCA as the singular values of Qx^T Qy (QR bases; Bjorck & Golub)."""
    def reduced(a):
        a = a - a.mean(0)
        u, s, _ = np.linalg.svd(a, full_matrices=False)
        share = np.cumsum(s**2) / (s**2).sum()
        k = int(np.searchsorted(share, keep - 1e-12) + 1)
        return u[:, :k] * s[:k]

    qx, _ = np.linalg.qr(reduced(x))
    qy, _ = np.linalg.qr(reduced(y))
    return np.linalg.svd(qx.T @ qy, compute_uv=False)


@pytest.mark.parametrize("seed", [0, 1])
def test_linear_cka_equals_the_gram_matrix_definition(seed):
    x, y = planted(seed=seed)
    assert linear_cka(SufficientStats.of(x, y)) == pytest.approx(cka_reference(x, y), rel=1e-10)
    unrelated = np.random.default_rng(9).normal(size=y.shape)
    low = linear_cka(SufficientStats.of(x, unrelated))
    assert low == pytest.approx(cka_reference(x, unrelated), rel=1e-8) and low < 0.1


def test_linear_cka_is_invariant_to_rotation_and_isotropic_scale_only():
    x, _ = planted()
    q, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(6, 6)))
    assert linear_cka(SufficientStats.of(x, 2.5 * x @ q + 7)) == pytest.approx(1, abs=1e-12)
    stretched = x * np.array([1, 1, 1, 1, 1, 10.0])
    assert linear_cka(SufficientStats.of(x, stretched)) < 0.9


def test_svcca_equals_svd_then_qr_canonical_correlations():
    rng = np.random.default_rng(4)
    x, y = planted(dx=8, dy=9, noise=1.0)
    x[:, 7] *= 1e-2  # below 1% of the variance: the SVD step drops it
    rho = canonical_correlations(SufficientStats.of(x, y))
    want = svcca_reference(x, y)
    np.testing.assert_allclose(rho, want, atol=1e-8)
    assert len(rho) == 7  # x's 8th direction was dropped (y keeps more than 7)
    # keep=1 is plain CCA: every invertible linear map of a side keeps all correlations 1.
    full = canonical_correlations(SufficientStats.of(x, x @ rng.normal(size=(8, 8)) - 3), 1.0)
    np.testing.assert_allclose(full, 1, atol=1e-8)
    assert svcca(SufficientStats.of(x, rng.normal(size=(300, 5)))) < 0.4


def test_farthest_point_rows_follow_the_definition_and_find_every_cluster():
    rng = np.random.default_rng(5)
    centres = rng.normal(scale=20, size=(6, 3))
    x = np.concatenate([c + rng.normal(size=(50, 3)) for c in centres])
    chosen = farthest_point_rows(x, 6, seed=2)
    assert sorted(set(chosen // 50)) == list(range(6))  # one anchor per cluster
    for i in range(1, len(chosen)):  # each the row farthest from those before it
        gap = np.min(((x[:, None] - x[chosen[:i]][None]) ** 2).sum(-1), axis=1)
        assert gap[chosen[i]] == pytest.approx(gap.max())
    assert farthest_point_rows(x, 6, seed=2).tolist() == chosen.tolist()
    picked = random_rows(300, 40, seed=1)
    assert len(set(picked)) == 40 and (np.diff(picked) > 0).all()
    assert not np.array_equal(picked, random_rows(300, 40, seed=2))


def test_the_authors_adam_fit_is_torch_adam_on_their_objective_and_nears_the_closed_form():
    """The fit from sufficient statistics equals torch's Adam over the rows (Keras puts the
    epsilon after the bias correction: a difference of order 1e-7 here), and with more
    steps it reaches `ridge_authors`."""
    x, y = planted(n=40, noise=0.5)
    l2, steps, lr = 1e-3, 300, 5e-3
    s = SufficientStats.of(x, y)
    ours = adam_authors([s], l2, steps=steps, lr=lr, seed=3)[0]
    limit = np.sqrt(6 / 11)
    w = torch.tensor(np.random.default_rng(3).uniform(-limit, limit, (1, 6, 5))[0],
                     requires_grad=True)
    opt = torch.optim.Adam([w], lr=lr, eps=1e-7)
    X, Y = torch.tensor(x), torch.tensor(y)
    for _ in range(steps):
        opt.zero_grad()
        out = X @ w
        (((Y - out) ** 2).mean() + l2 * (w**2).sum() + l2 * (out**2).sum() / len(X)).backward()
        opt.step()
    np.testing.assert_allclose(ours.A, w.detach().numpy(), atol=1e-5)
    long = adam_authors([s, s], l2, steps=20000, lr=1e-3)
    closed = ridge_authors(s, l2).A
    for m in long:  # stacked fits are independent; each ends within Adam's jitter (~lr)
        np.testing.assert_allclose(m.A, closed, atol=1e-3)
    assert np.abs(ours.A - closed).max() > 1e-2  # 300 steps had not got there


def test_procrustes_among_the_translators_recovers_a_planted_rotation():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(24, 6))
    x -= x.mean(0)
    x = x @ np.linalg.inv(np.linalg.cholesky(np.cov(x.T, bias=True)).T)  # covariance exactly I
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    x += 4.0
    maps = fit_translators({"fps|4d|0": SufficientStats.of(x, x @ q)},
                        ["procrustes", "ols", "lstsq_ortho"], l2=1e-4)
    np.testing.assert_allclose(maps["procrustes|fps|4d|0"].A, q, atol=1e-10)
    np.testing.assert_allclose(maps["procrustes|fps|4d|0"].b, 0, atol=1e-9)
    np.testing.assert_allclose(maps["ols|fps|4d|0"].A, q, atol=1e-8)
    np.testing.assert_allclose(maps["lstsq_ortho|fps|4d|0"].A, q, atol=1e-8)


def test_study_summaries_average_repeats_and_count_wins():
    def row(src, tgt, anchor, repeat, ratio):
        return {"source": src, "target": tgt, "translator": "ols", "anchor": anchor,
                "budget": "1d", "repeat": repeat, "L": ratio, "M": ratio, "M_target_own": 1.0,
                "ratio": ratio}

    rows = [row("a", "b", "support", 0, 1.0), row("a", "b", "support", 1, 3.0),
            row("b", "a", "support", 0, 5.0), row("a", "b", "random", 0, 4.0),
            row("b", "a", "random", 0, 4.0)]
    pairs = [{"source": "a", "target": "b", "cka": 0.5, "svcca": 0.8},
             {"source": "b", "target": "a", "cka": 0.5, "svcca": 0.8}]
    s = TranslatorStudy(["a", "b"], ["A", "B"], ["ols"], ["support", "random"], ["1d"], 2,
                        10, rows, pairs, [])
    ratios = s.ratios("ols", "support", "1d")
    assert ratios[0, 1] == 2.0 and ratios[1, 0] == 5.0 and np.isnan(ratios[0, 0])
    assert s.wins("support", "random") == 0.5  # a->b: 2 < 4; b->a: 5 > 4
    assert s.metrics["translate/ratio/ols/support/1d"] == 3.5
    assert s.similarity("cka")[0, 1] == 0.5 and s.similarity("cka")[1, 1] == 1
    summary = s.summary()
    assert summary["fits"] == [3, 2] and summary["mean_ratio"] == [3.0, 4.0]
