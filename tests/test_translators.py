"""The translator study's parts against references written out here: linear CKA as HSIC of
Gram matrices, SVCCA as SVD then QR canonical correlations, farthest-point sampling by its
definition, the authors' Adam fit against torch's Adam on their objective, Procrustes on a
planted rotation, the study's summaries on hand-made rows; latentis' translators against a
numpy rerun of latentis' pipeline and planted maps, the relative translator against cosines
by their definition and the invariances it exists for; the study run with them."""


import mlflow
import numpy as np
import pytest
import torch
from conftest import linearly_related, make_idx_dataset, mlflow_state_restored, use_store

from analysis.anchors import farthest_point_rows, random_rows
from analysis.linear_maps import (
    FIELD_TRANSLATORS,
    LATENTIS_LR,
    LATENTIS_STEPS,
    LATENTIS_TINY,
    RelativeMap,
    SufficientStats,
    adam_authors,
    adam_latentis,
    fit_from_stats,
    fit_linear_map,
    fit_translators,
    relative,
    relative_representation,
    ridge_authors,
)
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


LATENTIS = ["latentis_linear", "latentis_lortho", "latentis_ortho"]


def latentis_rerun(x, y, method, x_new):
    """latentis' Translator written out on rows (src/latentis/transform at 800699f): scale
    each side by its anchors' mean and torch's std (n - 1; under 10 float32 eps: 1), zero-pad
    to d = max(dx, dy), fit the aligner, apply it to the padded scaled x_new, cut to dy,
    undo y's scaling."""
    def scaling(v):
        sd = v.std(0, ddof=1)
        return v.mean(0), np.where(sd < 10 * np.finfo(np.float32).eps, 1.0, sd)

    (mx, sx), (my, sy) = scaling(x), scaling(y)
    d = max(x.shape[1], y.shape[1])
    pad = lambda v: np.hstack([v, np.zeros((len(v), d - v.shape[1]))])  # noqa: E731
    xs, ys = pad((x - mx) / sx), pad((y - my) / sy)
    if method == "latentis_ortho":  # svd_align_state: U V^T of svd(X^T Y)
        u, _, vt = np.linalg.svd(xs.T @ ys)
        m = u @ vt
    else:  # lstsq_align_state, and lstsq_ortho_align_state's U V^T of its solution
        m = np.linalg.lstsq(xs, ys, rcond=None)[0]
        if method == "latentis_lortho":
            u, _, vt = np.linalg.svd(m)
            m = u @ vt
    return (pad((x_new - mx) / sx) @ m)[:, :y.shape[1]] * sy + my


@pytest.mark.parametrize("dx,dy", [(5, 5), (3, 6), (6, 3)])
def test_latentis_translators_equal_a_numpy_rerun_of_latentis(dx, dy):
    """Both sides zero-padded in turn, and dead (constant) variables: latentis counts their
    std as 1, so they neither blow up nor move. (A dead target variable only where the
    target keeps as many live variables as the source: otherwise U V^T of the rank-deficient
    cross product is arbitrary on it, in latentis as here.) The statistics route solves the
    normal equations, which square the scaled anchors' condition number (checked below 10):
    agreement to ~cond^2 * 1e-16 * |y| ~ 1e-12; 1e-9 leaves a margin of 1000."""
    rng = np.random.default_rng(dx * 10 + dy)
    x = rng.normal(size=(40, dx)) * rng.uniform(0.3, 3, dx) + rng.normal(size=dx)
    y = x @ rng.normal(size=(dx, dy)) + 0.5 * rng.normal(size=(40, dy)) - 2
    x_new = rng.normal(size=(25, dx)) * 2
    x[:, 1] = x_new[:, 1] = 0.3
    if dy >= dx:
        y[:, -1] = 7.0
    scaled = (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1)
    assert np.linalg.cond(np.delete(scaled, 1, axis=1)) < 10
    s = SufficientStats.of(x, y)
    for name in LATENTIS:
        m = fit_from_stats(s, name)
        np.testing.assert_allclose(m(x_new), latentis_rerun(x, y, name, x_new), atol=1e-9)
        if dy >= dx:
            np.testing.assert_allclose(m(x_new)[:, -1], 7.0, atol=1e-9)


def test_latentis_maps_are_the_estimators_they_coincide_with():
    """Without constant variables the n - 1 of torch's std cancels: latentis' ortho is
    `procrustes`, l-ortho is `lstsq_ortho`, and linear is `ols` when the anchors determine
    it (to the normal equations' rounding, as above)."""
    x = np.random.default_rng(1).normal(size=(30, 5)) * [0.5, 1, 2, 3, 4] + 1
    y = x @ np.random.default_rng(2).normal(size=(5, 4)) + np.random.default_rng(3).normal(
        size=(30, 4))
    s = SufficientStats.of(x, y)
    for ours, theirs in (("latentis_ortho", "procrustes"), ("latentis_lortho", "lstsq_ortho"),
                         ("latentis_linear", "ols")):
        a, b = fit_from_stats(s, ours), fit_from_stats(s, theirs)
        np.testing.assert_allclose(a.A, b.A, atol=1e-10)
        np.testing.assert_allclose(a.b, b.b, atol=1e-10)


def whitened(n, d, seed):
    """n rows whose covariance is exactly the identity, shifted off the origin."""
    x = np.random.default_rng(seed).normal(size=(n, d))
    x -= x.mean(0)
    return x @ np.linalg.inv(np.linalg.cholesky(np.cov(x.T)).T) + 4.0


def test_latentis_orthogonal_translators_recover_planted_maps_across_dimensions():
    """6 -> 4: y = 2.5 x P + 1 for orthonormal columns P (every dimension of y has std 2.5,
    so the scaling keeps P orthogonal): both find 2.5 P. 4 -> 6: y = [x Q, 3, -1], a
    rotation and two dead variables: x is padded to 6 dimensions, the dead ones scaled by 1,
    and the cut keeps [Q, 0]. float64 SVDs of exact data: ~1e-15; 1e-10."""
    rng = np.random.default_rng(7)
    x, x_new = whitened(30, 6, 0), rng.normal(size=(10, 6))
    p, _ = np.linalg.qr(rng.normal(size=(6, 4)))
    s = SufficientStats.of(x, 2.5 * x @ p + 1)
    for name in ("latentis_ortho", "latentis_lortho"):
        m = fit_from_stats(s, name)
        np.testing.assert_allclose(m.A, 2.5 * p, atol=1e-10)
        np.testing.assert_allclose(m(x_new), 2.5 * x_new @ p + 1, atol=1e-10)
    x, x_new = whitened(30, 4, 1), rng.normal(size=(10, 4))
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    embed = lambda v: np.hstack([v @ q, np.full((len(v), 1), 3.0),  # noqa: E731
                                 np.full((len(v), 1), -1.0)])
    s = SufficientStats.of(x, embed(x))
    for name in ("latentis_ortho", "latentis_lortho"):
        m = fit_from_stats(s, name)
        assert m.A.shape == (4, 6)
        np.testing.assert_allclose(m(x_new), embed(x_new), atol=1e-10)


def test_latentis_affine_is_torch_adam_from_the_same_start_and_stops_short_of_linear():
    """latentis' SGD aligner run by torch (nn.Linear on the padded scaled anchors, F.mse_loss,
    Adam's defaults but lr) from the same initialisation: both float64, differing in
    summation order only (1e-16 of each gradient; Adam's normalised steps pass that on
    unamplified over 300 steps of 1e-3): 1e-12. Its 300 steps stop far short of the least
    squares minimum on a planted affine map, which `latentis_linear` finds exactly; 5000
    steps reach it to within Adam's hovering of a few lr per entry (10 lr, in the scaled
    target's units)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 5)) * rng.uniform(0.5, 2, 5) + rng.normal(size=5)
    a, b = rng.normal(size=(5, 3)), rng.normal(size=3)
    y = x @ a + b
    s = SufficientStats.of(x, y)
    linear = fit_from_stats(s, "latentis_linear")
    np.testing.assert_allclose(linear.A, a, atol=1e-10)
    np.testing.assert_allclose(linear.b, b, atol=1e-10)

    ours = adam_latentis([s], seed=3)[0]
    d, sx, sy = 5, x.std(0, ddof=1), y.std(0, ddof=1)
    start = np.random.default_rng(3)
    w0 = start.uniform(-1 / np.sqrt(d), 1 / np.sqrt(d), (d, d))
    b0 = start.uniform(-1 / np.sqrt(d), 1 / np.sqrt(d), d)
    layer = torch.nn.Linear(d, d, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(w0.T))
        layer.bias.copy_(torch.tensor(b0))
    pad = lambda v: np.hstack([v, np.zeros((len(v), d - v.shape[1]))])  # noqa: E731
    xs, ys = torch.tensor((x - x.mean(0)) / sx), torch.tensor(pad((y - y.mean(0)) / sy))
    opt = torch.optim.Adam(layer.parameters(), lr=LATENTIS_LR)
    for _ in range(LATENTIS_STEPS):
        opt.zero_grad()
        torch.nn.functional.mse_loss(layer(xs), ys).backward()
        opt.step()
    x_new = rng.normal(size=(10, 5))
    with torch.no_grad():
        theirs = layer(torch.tensor((x_new - x.mean(0)) / sx)).numpy()[:, :3] * sy + y.mean(0)
    np.testing.assert_allclose(ours(x_new), theirs, atol=1e-12)
    assert np.abs((ours(x) - y) / sy).max() > 0.5  # 300 steps: far from the planted map
    converged = adam_latentis([s], steps=5000, seed=3)[0]
    assert np.abs((converged(x) - y) / sy).max() < 10 * LATENTIS_LR
    stacked = adam_latentis([s, SufficientStats.of(x[:20], y[:20])], seed=3)
    np.testing.assert_array_equal(stacked[0].A, ours.A)  # stacked fits are independent


def test_relative_representation_is_the_cosine_to_each_anchor():
    rng = np.random.default_rng(2)
    x, anchors = rng.normal(size=(7, 5)) * 3, rng.normal(size=(4, 5)) - 1
    x[3] = 0.0  # F.normalize leaves a zero row zero
    want = np.array([[u @ a / max(np.sqrt(u @ u), 1e-12) / np.sqrt(a @ a) for a in anchors]
                     for u in x])
    got = relative_representation(x, anchors)
    assert got.shape == (7, 4)
    np.testing.assert_allclose(got, want, atol=1e-15 * 5 * 4)  # a few roundings per term
    np.testing.assert_array_equal(got[3], 0.0)
    np.testing.assert_allclose(relative_representation(anchors, anchors).diagonal(), 1, atol=1e-15)


def test_the_relative_translator_is_invariant_to_angle_preserving_maps_of_the_source():
    """Moschella et al.'s point: cosines do not see a rotation or rescaling of the source
    space. Refitted on rotated, rescaled source codes the translator predicts the same; and
    its readout serves a rotated, rescaled source unchanged once given that space's anchors
    (zero-shot), which a map of the codes themselves cannot. Cosines of the rotated codes
    differ by rounding (1e-16), which the readout's solve amplifies by at most its condition
    number (<= 1e3, the RTOL cut): 1e-10."""
    rng = np.random.default_rng(4)
    anchors, x_new = rng.normal(size=(12, 4)) + 0.5, rng.normal(size=(20, 4))
    y = np.tanh(anchors @ rng.normal(size=(4, 3))) * 5
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    m = relative(anchors, y)
    turned = relative(2.5 * anchors @ q, y)
    np.testing.assert_allclose(turned(2.5 * x_new @ q), m(x_new), atol=1e-10)
    reused = RelativeMap("relative", 2.5 * anchors @ q, m.readout)
    np.testing.assert_allclose(reused(2.5 * x_new @ q), m(x_new), atol=1e-10)
    np.testing.assert_allclose(m(3.0 * x_new), m(x_new), atol=1e-10)  # each code's norm too
    linear = fit_linear_map(anchors, y, "ols")
    assert np.abs(linear(2.5 * x_new @ q) - linear(x_new)).max() > 1


def test_the_relative_translator_recovers_maps_of_directions_and_cannot_carry_norms():
    """Its predictions are affine maps of x / |x|: a target that is one is recovered on new
    codes from 12 anchors in 4 dimensions (exact data, conditioning ~10: 1e-9); a target
    that depends on the norm (y = x B) is not, which OLS on the same anchors recovers."""
    rng = np.random.default_rng(5)
    anchors, x_new = rng.normal(size=(12, 4)) * 2, rng.normal(size=(30, 4)) * 2
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    b, c = rng.normal(size=(4, 3)), rng.normal(size=3)
    m = relative(anchors, unit(anchors) @ b + c)
    assert m.readout.rank == 4  # 12 cosines span the 4 directions (centred: still 4)
    np.testing.assert_allclose(m(x_new), unit(x_new) @ b + c, atol=1e-9)
    m = relative(anchors, anchors @ b)
    assert np.abs(m(x_new) - x_new @ b).max() > 0.5
    np.testing.assert_allclose(fit_linear_map(anchors, anchors @ b, "ols")(x_new), x_new @ b,
                               atol=1e-9)


def test_fit_translators_fits_the_relative_translator_on_the_anchor_rows_only():
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(40, 4)), rng.normal(size=(40, 3))
    stats = {"fps|1d|0": SufficientStats.of(x[:4], y[:4]), "all|all|0": SufficientStats.of(x, y)}
    maps = fit_translators(stats, ["relative", "latentis_ortho", "latentis_affine"], seed=2,
                           rows={"fps|1d|0": (x[:4], y[:4])})
    assert set(maps) == {"relative|fps|1d|0", "latentis_ortho|fps|1d|0",
                         "latentis_ortho|all|all|0", "latentis_affine|fps|1d|0",
                         "latentis_affine|all|all|0"}
    np.testing.assert_allclose(maps["relative|fps|1d|0"](x), relative(x[:4], y[:4])(x))
    np.testing.assert_array_equal(maps["latentis_affine|all|all|0"].A,
                                  adam_latentis([stats["all|all|0"]], seed=2)[0].A)
    with pytest.raises(KeyError, match="unknown estimator 'relative'"):
        fit_from_stats(stats["fps|1d|0"], "relative")  # it needs the rows
    assert LATENTIS_TINY == pytest.approx(1.19e-6, rel=1e-2)


@pytest.fixture(scope="module")
def planted_spaces(tmp_path_factory):
    """Three encodings of one 300-image split whose spaces are exact linear images of one
    another (a dense VAE whose codes spread ~30, the same with its latent space rotated, and
    stretched per variable; each decoder undoes its map), and a recorder on their store."""
    from latentatlas import model_store, tracking
    from latentatlas.config import DenseVAEConfig
    from latentatlas.encode.pipeline import encode
    from latentatlas.models import build_model

    root = tmp_path_factory.mktemp("planted")
    with mlflow_state_restored(), pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        uri = use_store(f"sqlite:///{root}/mlflow.db", "translators-test")
        data = make_idx_dataset(root / "idx", n_train=40, n_test=300)
        cfg = DenseVAEConfig(hidden=[16], latent_dim=4)
        torch.manual_seed(0)
        model = build_model(cfg, (1, 28, 28)).eval()
        with torch.no_grad():
            model.mu.weight *= 30
        q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(4, 4)))
        paths = []
        for name, m in (("plain", np.eye(4)), ("rotated", q),
                        ("stretched", np.diag([3.0, 0.5, 1.0, 2.0]))):
            planted = linearly_related(model, m)
            with mlflow.start_run(run_name=name) as run:
                model_store.log_model(planted, cfg.model_dump(), (1, 28, 28))
            paths.append(str(encode(f"runs:/{run.info.run_id}/model", "mnist", "test",
                                    root / name, data_path=str(data)).path))
        yield paths, tracking.Recorder(uri, "translators-test")


def test_the_study_puts_the_field_translators_beside_the_authors_map(planted_spaces):
    """The authors' ridge and the five field translators on every ordered pair, anchor choice
    and budget. latentis' linear is least squares with a bias, exact between exact linear
    images once the anchors determine it (4d) and on every fit row (float32 codes: L below
    1e-8 of the codes' spread ~30, squared, as the OLS check of the study's other test). The
    relative translator has no fit on every row (a note says so), and its scores do not
    change when the source is the rotated space: random and farthest-point anchors pick the
    same rows there (both see distances only), so only float32 rounding of the codes
    (~1e-7), amplified at most 1e3 by the readout's solve, separates the two."""
    from jobs import steps

    paths, recorder = planted_spaces
    translators = ["ridge_authors", *FIELD_TRANSLATORS]
    run_id, out = steps.translate_study(
        recorder, paths, labels=["plain", "rotated", "stretched"], translators=translators,
        anchors=["support", "random", "fps", "all"], budgets=[1.0, 4.0], repeats=1)
    sets = 3 * 2 + 1  # support / random / fps at 1d and 4d, and every fit row
    assert len(out.rows) == 6 * (sets * len(translators) - 1)  # no relative|all
    assert not [r for r in out.rows if (r["translator"], r["anchor"]) == ("relative", "all")]
    assert any(n.startswith("relative: fitted on chosen anchors only") for n in out.notes)
    for r in out.rows:
        assert np.isfinite([r["L"], r["M"]]).all()
        if r["translator"] == "latentis_linear" and r["budget"] in ("4d", "all"):
            assert r["L"] < 1e-8 * 900, r
    relative_rows = {(r["source"], r["target"], r["anchor"], r["budget"]): r for r in out.rows
                     if r["translator"] == "relative"}
    for anchor in ("random", "fps"):
        for budget in ("1d", "4d"):
            a = relative_rows[("plain", "stretched", anchor, budget)]
            b = relative_rows[("rotated", "stretched", anchor, budget)]
            assert b["L"] == pytest.approx(a["L"], rel=1e-3)
            assert b["M"] == pytest.approx(a["M"], rel=1e-3)
    assert "translate/ratio/relative/random/1d" in out.metrics
    assert "translate/ratio/relative/all/all" not in out.metrics
    files = {f.path for f in mlflow.MlflowClient(recorder.uri).list_artifacts(run_id)}
    assert {"heatmaps_relative.png", "heatmaps_latentis_affine.png",
            "budget_curves.png"} <= files


def test_the_scoring_pass_scores_any_translator(planted_spaces, ray_session):
    """The study's scoring pass (`relocation_errors`) takes any translator, a linear map or
    the relative one, on Ray Data as here; the relative translator's L is the mean squared
    error of its predictions on the held-out rows, computed here from the codes (float64 on
    both sides from the same float32 codes: rounding only, 1e-9)."""
    from analysis.relocation import relocation_errors
    from latentatlas import model_store
    from latentatlas.encode import open_encoding
    from latentatlas.models import share_model

    src, tgt = (open_encoding(p) for p in planted_spaces[0][::2])  # plain -> stretched
    a, b = src.arrays(["index", "mu"]), tgt.arrays(["mu"])
    maps = {"ols": fit_linear_map(a["mu"][1::5], b["mu"][1::5], "ols"),
            "relative": relative(a["mu"][1:80:5], b["mu"][1:80:5])}
    models = [share_model(*model_store.load_vae(e.meta.model_uri)) for e in (src, tgt)]
    split = src.meta.load_split()
    here, on_ray = (relocation_errors(src, tgt, maps, split, *models, labels=0, stop=300,
                                      here=h, per_task=64) for h in (True, False))
    for key in here:
        np.testing.assert_allclose(on_ray[key], here[key], rtol=1e-6, atol=1e-12)
    held = (a["index"] % 5 == 0) & (a["index"] < 300)
    for name in ("ols", "relative"):
        want = ((b["mu"][held] - maps[name](a["mu"][held])) ** 2).mean()
        assert here[f"L_{name}"][-1] == pytest.approx(want, rel=1e-9)
