"""FID / KID through torchmetrics against independent numpy/scipy computations; FID's response
to noise and blur in a trained classifier's features; the samplers (GMM, renormalisation);
the Inception network from a weights file the test writes; FID scored after training and
by `latentatlas fid`. (The classifier and the second stage trained by Ray Train, and the
two-stage samplers, run in the main job's test.)"""

import mlflow
import numpy as np
import pytest
import scipy.linalg
import scipy.ndimage
import torch

from jobs import fid as fid_verb
from latentatlas import quality, tracking
from latentatlas.config import validate
from latentatlas.data import load_split
from latentatlas.errors import UserError
from latentatlas.inception import FIDInception, load_inception, read_inception_weights
from latentatlas.models import Classifier, share_model
from latentatlas.train.runner import train


def frechet_by_scipy(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(s_a @ s_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * root))


def mmd_poly_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """KID's unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, written out."""
    d = x.shape[1]
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    m, n = len(x), len(y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1))
                 + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean())


def test_fid_and_kid_equal_independent_computations():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6)) + 0.5
    got = quality.fid_kid(a, b)
    assert got["fid"] == pytest.approx(frechet_by_scipy(a, b), rel=1e-6)
    # subsets as large as the sets: every subset is the whole set, so KID is the full MMD
    assert got["kid_mean"] == pytest.approx(mmd_poly_unbiased(a, b), rel=1e-6)
    assert got["kid_std"] == pytest.approx(0, abs=1e-9)
    assert quality.fid_kid(a, a)["fid"] == pytest.approx(0, abs=1e-6)


def trained_digits_classifier() -> Classifier:
    split = load_split("digits", "train")
    x = torch.from_numpy(split.images / 255.0).float()
    y = torch.from_numpy(split.labels)
    torch.manual_seed(0)
    clf = Classifier(split.shape, 10, [16, 32], 32)
    opt = torch.optim.Adam(clf.parameters(), lr=3e-3)
    for _ in range(30):
        for i in range(0, len(x), 128):
            loss = torch.nn.functional.cross_entropy(clf(x[i:i + 128]), y[i:i + 128])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return clf.eval()


def test_fid_grows_with_noise_and_blur_in_classifier_features(ray_session):
    clf = trained_digits_classifier()
    extractor = {"kind": "classifier",
                 "model": share_model(clf, {"model": {"name": "classifier", "channels": [16, 32],
                                                      "hidden": 32, "num_classes": 10},
                                            "input_shape": [1, 8, 8]})}
    real = load_split("digits", "test").images
    ref = quality.image_features(extractor, len(real), images=real)
    # the Ray Data actor pool computes the same features as this process
    on_ray = quality.image_features(extractor, len(real), images=real, actors=1, batch_size=100)
    np.testing.assert_allclose(on_ray, ref, rtol=1e-5, atol=1e-6)

    def fid_of(images: np.ndarray) -> float:
        feats = quality.image_features(extractor, len(images), images=images)
        return quality.fid_kid(ref, feats)["fid"]

    x = real.astype(np.float64)
    rng = np.random.default_rng(1)
    noisy = [fid_of(np.clip(x + s * 255 * rng.normal(size=x.shape), 0, 255).astype(np.uint8))
             for s in (0.05, 0.15, 0.3, 0.5)]
    blurred = [fid_of(scipy.ndimage.gaussian_filter(x, (0, 0, s, s)).astype(np.uint8))
               for s in (0.5, 1.0, 1.5, 2.5)]
    assert fid_of(real) == pytest.approx(0, abs=1e-6)
    assert all(np.diff(noisy) > 0), noisy
    assert all(np.diff(blurred) > 0), blurred


def test_renormalise_matches_the_variance_law():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5000, 3)) * [0.5, 1.0, 0.2]
    var_mu, mean_sigma2 = np.array([0.8, 0.9, 0.01]), np.array([0.2, 0.15, 0.99])
    out = quality.renormalise(z, var_mu, mean_sigma2)
    target = np.sqrt(np.mean(var_mu + mean_sigma2))  # sigma^2, not sigma
    assert out.std(axis=0).mean() == pytest.approx(target, rel=1e-5)
    # One scale for every variable (not a per-variable standardisation): the spreads keep
    # the proportions 0.5 : 1.0 : 0.2 they were drawn with.
    spread = out.std(axis=0)
    np.testing.assert_allclose(spread / spread[1], [0.5, 1.0, 0.2], rtol=0.05)


def test_mixture_fit_and_sampling_recover_a_known_mixture():
    rng = np.random.default_rng(0)
    cov = np.array([[1.0, 0.6], [0.6, 0.5]])
    data = np.concatenate([rng.multivariate_normal([-5, 0], cov, 3000),
                           rng.multivariate_normal([5, 2], 0.25 * cov, 1000)])
    fit = quality.fit_mixture(data, 2, seed=0)
    first = np.argmin(fit.means[:, 0])
    np.testing.assert_allclose(sorted(fit.weights), [0.25, 0.75], atol=0.02)
    np.testing.assert_allclose(fit.covariances[first], cov, atol=0.1)
    drawn = quality.mixture_codes(fit, 20000, seed=1)
    assert (drawn[:, 0] > 0).mean() == pytest.approx(0.25, abs=0.01)
    np.testing.assert_allclose(drawn.mean(0), data.mean(0), atol=0.1)
    # drawn in random component order, not grouped (scikit-learn's `sample` groups them)
    assert 0.1 < (drawn[:1000, 0] > 0).mean() < 0.4


def test_inception_loads_from_a_weights_file_and_names_what_is_wrong(tmp_path):
    torch.manual_seed(0)
    net = FIDInception().eval()
    path = tmp_path / "pt_inception.pth"
    state = {k: v for k, v in net.state_dict().items() if "num_batches_tracked" not in k}
    torch.save(state, path)
    loaded = load_inception(read_inception_weights(path))
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        np.testing.assert_allclose(loaded(x).numpy(), net(x).numpy(), rtol=1e-5, atol=1e-6)
        assert net(x).shape == (2, 2048)
    ext = quality.resolve_extractor("inception", inception_weights=str(path))
    assert ext.name == "inception" and "sha256" in ext.source
    with pytest.raises(UserError, match="--inception-weights"):
        quality.resolve_extractor("inception")
    with pytest.raises(UserError, match="file not found"):
        read_inception_weights(tmp_path / "nope.pth")
    torch.save({"fc.weight": torch.zeros(1008, 2048)}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="not FID InceptionV3 weights"):
        read_inception_weights(tmp_path / "other.pth")


def register_classifier(shape, name: str) -> str:
    """An (untrained) classifier registered as `latentatlas train` registers one: the main
    job's test trains and registers a real one through Ray Train."""
    torch.manual_seed(0)
    clf = Classifier(shape, 10, [8, 16], 16)
    with mlflow.start_run():
        logged = tracking.log_model(clf, {"name": "classifier", "channels": [8, 16],
                                          "hidden": 16, "num_classes": 10}, shape)
    return tracking.register_model(logged.model_uri, name, {"val_accuracy": "0.1"})


def test_fid_in_training_and_from_the_verb(ray_session, mlflow_store, workdir, idx_folder,
                                           capsys):
    data = {"name": "mnist", "path": str(idx_folder)}
    uri = tracking.resolve_tracking_uri()
    with pytest.raises(UserError, match="no such model in the registry"):
        quality.resolve_extractor("classifier-mnist", tracking_uri=uri)
    assert register_classifier((1, 28, 28), "classifier-mnist") == "models:/classifier-mnist/1"
    vae = train(validate({"name": "vae", "data": data,
                          "model": {"name": "dense_vae", "hidden": [32], "latent_dim": 4},
                          "fid": {"extractor": "classifier-mnist", "samples": 32,
                                  "samplers": ["prior", "gmm"], "gmm_components": 3},
                          "train": {"epochs": 1, "batch_size": 16}}, "test"))
    assert {"fid/classifier-mnist-v1", "fid/classifier-mnist-v1/gmm",
            "kid/classifier-mnist-v1", "variance_loss/delta_var_gen"} <= set(vae.metrics)
    assert mlflow.get_run(vae.run_id).data.tags["latentatlas.fid_extractor"] == \
        "models:/classifier-mnist/1"
    assert vae.metrics["fid/classifier-mnist-v1"] > 0

    capsys.readouterr()
    assert fid_verb.main(["--model", vae.model_uri, "--data", "mnist:test", "--data-path",
                          str(idx_folder), "--gmm", "3", "--tracking-uri", uri,
                          "--experiment", "test"]) == 0
    out = capsys.readouterr().out
    assert "note: no --inception-weights" in out
    run = mlflow.get_run(out.split("MLflow run id: ")[1].split()[0])
    m = run.data.metrics
    for sampler in ("", "/gmm"):
        assert f"fid/classifier-mnist-v1{sampler}" in m
        assert f"variance_loss/delta_var_gen{sampler}" in m
    table = tracking.Recorder(uri, "test").table(run.info.run_id, "sample_quality.json")
    assert table["sampler"] == ["prior", "gmm"]
    assert table["fid"][0] == pytest.approx(m["fid/classifier-mnist-v1"])
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"sample_grids.png", "sample_quality.json"} <= artifacts
    # the verb and the training scored the same samples in the same features
    assert m["fid/classifier-mnist-v1"] == pytest.approx(vae.metrics["fid/classifier-mnist-v1"],
                                                         rel=1e-6)

    # the run's FID equals one computed here from the same features and the same samples
    model, mspec = tracking.load_model(vae.model_uri)
    ext = quality.resolve_extractor("classifier-mnist:1", tracking_uri=uri)
    real = load_split("mnist", "test", str(idx_folder)).images
    fake = quality.image_features(ext.shared, len(real), model=share_model(model, mspec),
                                  codes=quality.prior_codes(model, len(real), 0))
    by_hand = quality.fid_kid(quality.image_features(ext.shared, len(real), images=real), fake)
    assert m["fid/classifier-mnist-v1"] == pytest.approx(by_hand["fid"], rel=1e-6)

    assert fid_verb.main(["--model", vae.model_uri, "--data", "mnist:test", "--data-path",
                          str(idx_folder), "--extractor", "inception",
                          "--tracking-uri", uri]) != 0
    assert "error: --extractor inception needs --inception-weights PATH" in \
        capsys.readouterr().err
    assert fid_verb.main(["--model", vae.model_uri, "--samples", "1"]) == 2
    assert "error: --samples 1 / --gmm 100: FID needs at least 2 samples" in \
        capsys.readouterr().err
    with pytest.raises(UserError, match="takes \\(1, 28, 28\\) images"):
        quality.resolve_extractor("classifier-mnist", tracking_uri=uri, input_shape=(3, 32, 32))


def test_second_stage_variance_loss_closed_form():
    """A second stage that halves every code: mse = mean(mu^2) / 4 and the variance loss is
    3/4 of the codes' variance; the authors renormalise when it exceeds mse / 4."""
    from analysis.studies.sample_quality import second_stage_variance_loss

    class Halves(torch.nn.Module):
        def encode(self, z):
            return z, torch.zeros_like(z)

        def decode(self, z):
            return 0.5 * z

    mu = np.random.default_rng(0).normal(1.0, 2.0, size=(1000, 3))
    got = second_stage_variance_loss(Halves(), mu)
    assert got["second_stage/mse"] == pytest.approx((mu**2).mean() / 4, rel=1e-5)
    assert got["second_stage/delta_var"] == pytest.approx(0.75 * mu.var(0).mean(), rel=1e-5)
    assert got["second_stage/authors_renormalise"] == 1.0  # 0.75 * 4 > 0.25 * 1.25


def test_second_stage_on_posterior_samples_draws_afresh_every_epoch():
    """`second_stage.codes: sample`: each epoch trains on z = mu + sigma * eps drawn anew,
    the same draws for the same (seed, epoch) (so a resumed run sees them again)."""
    from latentatlas.train.families import FAMILIES
    from latentatlas.train.vae import posterior_draw

    rng = np.random.default_rng(0)
    mu = rng.normal(size=(1000, 3)).astype(np.float32)
    logvar = np.log(np.full((1000, 3), 0.25, np.float32))
    cfg = validate({"seed": 4, "model": {"name": "second_stage", "width": 8, "latent_dim": 3},
                    "second_stage": {"encoding": "unused", "codes": "sample"},
                    "train": {"epochs": 2, "batch_size": 100}}, "test")
    objective = FAMILIES[cfg.family].objective(cfg, {"train": mu, "train_logvar": logvar,
                                             "val": mu[:100]}, "cpu", 0, 1)
    objective.prepare(None, 0, wrap=lambda module: module)
    drawn = []
    for epoch in range(2):
        objective.train_epoch(epoch)
        drawn.append(objective.train_x.copy())
        np.testing.assert_array_equal(drawn[-1], posterior_draw(mu, logvar, 4, epoch))
    assert not np.allclose(drawn[0], drawn[1])
    for z in drawn:  # (z - mu) / sigma is standard normal
        eps = (z - mu) / 0.5
        assert abs(eps.mean()) < 0.1 and eps.std() == pytest.approx(1.0, abs=0.05)
