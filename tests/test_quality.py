"""FID / KID through torchmetrics against independent numpy/scipy computations; FID's response
to noise and blur in a trained classifier's features; the samplers (GMM, the authors' and
the per-variable renormalisations, their names and metric keys); the Inception network
from a weights file the test writes; FID scored after training and by `latentatlas fid`.
(The classifier and the second stage trained by Ray Train, and the two-stage samplers of
a trained second stage, run in the main job's test.)"""

import hashlib
from pathlib import Path

import mlflow
import numpy as np
import pytest
import scipy.linalg
import scipy.ndimage
import torch

from analysis import renormalisation
from jobs import fid as fid_verb
from latentatlas import environment, features, frechet, model_store, quality, samplers, tracking
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
    from torchmetrics.image.fid import FrechetInceptionDistance

    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6)) + 0.5
    got = frechet.compare(frechet.Reference.of(a), b)
    assert got["fid"] == pytest.approx(frechet_by_scipy(a, b), rel=1e-6)

    class Given(torch.nn.Module):  # torchmetrics' FID fed the features themselves
        num_features = 6

        def forward(self, x):
            return x

    fid = FrechetInceptionDistance(feature=Given())
    fid.update(torch.as_tensor(a), real=True)
    fid.update(torch.as_tensor(b), real=False)
    assert got["fid"] == pytest.approx(float(fid.compute()), rel=1e-6)
    # subsets as large as the sets: every subset is the whole set, so KID is the full MMD
    assert got["kid_mean"] == pytest.approx(mmd_poly_unbiased(a, b), rel=1e-6)
    assert got["kid_std"] == pytest.approx(0, abs=1e-9)
    assert frechet.compare(frechet.Reference.of(a), a)["fid"] == pytest.approx(0, abs=1e-6)
    # a reference without its features (a statistics file) gives FID alone
    stats = frechet.Reference(a.mean(0), np.cov(a, rowvar=False), None, "stats")
    assert frechet.compare(stats, b) == {"fid": pytest.approx(got["fid"], rel=1e-12)}


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
    ref = features.image_features(extractor, len(real), images=real)
    # the Ray Data actor pool computes the same features as this process
    on_ray = features.image_features(extractor, len(real), images=real, actors=1, batch_size=100)
    np.testing.assert_allclose(on_ray, ref, rtol=1e-5, atol=1e-6)

    def fid_of(images: np.ndarray) -> float:
        feats = features.image_features(extractor, len(images), images=images)
        return frechet.compare(frechet.Reference.of(ref), feats)["fid"]

    x = real.astype(np.float64)
    rng = np.random.default_rng(1)
    noisy = [fid_of(np.clip(x + s * 255 * rng.normal(size=x.shape), 0, 255).astype(np.uint8))
             for s in (0.05, 0.15, 0.3, 0.5)]
    blurred = [fid_of(scipy.ndimage.gaussian_filter(x, (0, 0, s, s)).astype(np.uint8))
               for s in (0.5, 1.0, 1.5, 2.5)]
    assert fid_of(real) == pytest.approx(0, abs=1e-6)
    assert all(np.diff(noisy) > 0), noisy
    assert all(np.diff(blurred) > 0), blurred


def correlated_codes(n: int = 5000) -> np.ndarray:
    """Codes with unequal spreads and correlations between variables."""
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 3)) @ np.array([[0.5, 0.2, 0.0], [0.0, 1.0, 0.1],
                                                [0.0, 0.0, 0.2]])


def test_renormalise_authors_is_one_scale_to_the_variance_law():
    z = correlated_codes()
    var_mu, mean_sigma2 = np.array([0.8, 0.9, 0.01]), np.array([0.2, 0.15, 0.99])
    out = renormalisation.renormalise_authors(z, var_mu, mean_sigma2)
    adjust = np.sqrt(np.mean(var_mu + mean_sigma2))  # sigma^2, not sigma
    assert out.std(axis=0).mean() == pytest.approx(adjust, rel=1e-5)
    # one scalar for every variable and row (not a per-variable standardisation)
    ratio = out / z
    np.testing.assert_allclose(ratio, ratio[0, 0], rtol=1e-6)


def test_renormalise_per_variable_meets_each_variables_variance_law():
    z = correlated_codes()
    var_mu, mean_sigma2 = np.array([0.8, 0.9, 0.01]), np.array([0.2, 0.15, 0.99])
    out = renormalisation.renormalise_per_variable(z, var_mu, mean_sigma2)
    np.testing.assert_allclose(out.std(axis=0), np.sqrt(var_mu + mean_sigma2), rtol=1e-5)
    np.testing.assert_allclose(np.corrcoef(out, rowvar=False), np.corrcoef(z, rowvar=False),
                               atol=1e-6)


def test_per_variable_renormalisation_leaves_active_variables_the_authors_inflate():
    """12 of 16 variables inactive: the first stage's draws of them are noise of variance ~1
    (mean sigma^2 ~ 1), which the second stage collapses to a tiny spread; the 4 active ones
    come out of it with their first-stage spread. The authors' one scale, sized by all 16,
    inflates the active 4 by adjust / mean(std); a scale per variable leaves them alone."""
    rng = np.random.default_rng(0)
    active_std = np.array([1.5, 1.2, 0.9, 0.7])
    z = rng.normal(size=(20000, 16)) * np.concatenate([active_std, np.full(12, 0.02)])
    sampled_std = z.std(axis=0)
    mean_sigma2 = np.concatenate([np.full(4, 0.01), rng.uniform(0.95, 1.0, 12)])
    var_mu = np.concatenate([sampled_std[:4] ** 2 - 0.01, rng.uniform(0.0, 0.01, 12)])

    per_variable = renormalisation.renormalise_per_variable(z, var_mu, mean_sigma2)
    np.testing.assert_allclose(per_variable[:, :4], z[:, :4], rtol=1e-5)
    np.testing.assert_allclose(per_variable[:, 4:].std(axis=0),
                               np.sqrt(var_mu[4:] + mean_sigma2[4:]), rtol=1e-5)

    authors = renormalisation.renormalise_authors(z, var_mu, mean_sigma2)
    by_hand = np.sqrt(sum(var_mu[j] + mean_sigma2[j] for j in range(16)) / 16) / (
        sum(z[:, j].std() for j in range(16)) / 16)
    np.testing.assert_allclose(authors[:, :4] / z[:, :4], by_hand, rtol=1e-5)
    assert by_hand > 2  # the active variables' spread more than doubled


def test_renormalisations_leave_constant_variables_as_they_are():
    """A variable the samples hold constant has no spread a scale can set (its float std may
    be a rounding residue): it is left as it is, the others scaled as usual."""
    z = correlated_codes()
    z[:, 1] = 0.3
    var_mu, mean_sigma2 = np.array([0.8, 0.9, 0.01]), np.array([0.2, 0.15, 0.99])
    with np.errstate(all="raise"):
        out = renormalisation.renormalise_per_variable(z, var_mu, mean_sigma2)
        constant = renormalisation.renormalise_authors(np.full((10, 3), 0.3), var_mu, mean_sigma2)
    np.testing.assert_allclose(out[:, 1], 0.3, rtol=1e-7)
    np.testing.assert_allclose(out[:, [0, 2]].std(axis=0),
                               np.sqrt(var_mu + mean_sigma2)[[0, 2]], rtol=1e-5)
    np.testing.assert_allclose(constant, 0.3, rtol=1e-7)


def test_sampler_codes_and_metric_keys_name_both_renormalisations():
    from analysis.studies.sample_quality import sampler_codes
    from latentatlas.config import SAMPLERS

    class Prior:
        def sample_codes(self, n, generator):
            return torch.randn(n, 2, generator=generator)

    class Doubles:
        latent_dim = 2

        def decode(self, u):
            return 2 * u

    spec = {"var_mu": [1.0, 0.0], "mean_sigma2": [0.0, 4.0]}
    codes = sampler_codes(Prior(), np.zeros((500, 1, 2, 2), np.uint8), 0, samples=500,
                          second_stage=(Doubles(), spec))
    assert list(codes) == ["prior", "two_stage", "two_stage_renorm_authors",
                           "two_stage_renorm_variable"]
    assert set(codes) <= set(SAMPLERS)
    np.testing.assert_allclose(codes["two_stage_renorm_variable"].std(axis=0), [1.0, 2.0],
                               rtol=1e-5)
    scores = {s: {"fid": 1.0, "kid_mean": 0.0, "kid_std": 0.0, "delta_var_gen": 0.0}
              for s in codes}
    keys = set(quality.quality_metrics("clf-v1", scores))
    assert {"fid/clf-v1/two_stage_renorm_authors", "kid/clf-v1/two_stage_renorm_variable",
            "variance_loss/delta_var_gen/two_stage_renorm_variable"} <= keys
    assert not any(k.endswith("/two_stage_renorm") for k in keys)


def test_second_stage_learns_posterior_draws_unless_told_and_old_sampler_names_are_named():
    stage = {"model": {"name": "second_stage"}, "second_stage": {"encoding": "enc"}}
    assert validate(stage, "test").second_stage.codes == "sample"
    with pytest.raises(UserError, match="fid.samplers: two_stage_renorm is now "
                                        "two_stage_renorm_authors .* or "
                                        "two_stage_renorm_variable"):
        validate({"fid": {"samplers": ["prior", "two_stage_renorm"]}}, "test")


def test_mixture_fit_and_sampling_recover_a_known_mixture():
    rng = np.random.default_rng(0)
    cov = np.array([[1.0, 0.6], [0.6, 0.5]])
    data = np.concatenate([rng.multivariate_normal([-5, 0], cov, 3000),
                           rng.multivariate_normal([5, 2], 0.25 * cov, 1000)])
    fit = samplers.fit_mixture(data, 2, seed=0)
    first = np.argmin(fit.means[:, 0])
    np.testing.assert_allclose(sorted(fit.weights), [0.25, 0.75], atol=0.02)
    np.testing.assert_allclose(fit.covariances[first], cov, atol=0.1)
    drawn = samplers.mixture_codes(fit, 20000, seed=1)
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
    ext = features.resolve_extractor("inception", inception_weights=str(path))
    assert ext.name == "inception" and ext.features == 2048
    file_digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert ext.source == f"{path} (file sha256 {file_digest})"
    assert ext.resize.startswith("bilinear to 299x299") and ext.antialias is False
    # the digest is of the weights, not the file: a file with the counters torch-fidelity's
    # holds (other bytes) is the same network; other weights are not
    torch.save(net.state_dict(), tmp_path / "with_counters.pth")
    same = features.resolve_extractor("inception", inception_weights=str(tmp_path /
                                                                        "with_counters.pth"))
    assert same.digest == ext.digest and same.source != ext.source
    state["fc.bias"] = state["fc.bias"] + 1
    torch.save(state, tmp_path / "other_weights.pth")
    assert features.resolve_extractor("inception", inception_weights=str(
        tmp_path / "other_weights.pth")).digest != ext.digest
    with pytest.raises(UserError, match="--inception-weights"):
        features.resolve_extractor("inception")
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
        logged = model_store.log_model(clf, {"name": "classifier", "channels": [8, 16],
                                          "hidden": 16, "num_classes": 10}, shape)
    return model_store.register_model(logged.model_uri, name, {"val_accuracy": "0.1"})


def test_fid_in_training_and_from_the_verb(ray_session, mlflow_store, workdir, idx_folder,
                                           capsys):
    data = {"name": "mnist", "path": str(idx_folder)}
    uri = environment.resolve_tracking_uri()
    with pytest.raises(UserError, match="no such model in the registry"):
        features.resolve_extractor("classifier-mnist", tracking_uri=uri)
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
    model, mspec = model_store.load_model(vae.model_uri)
    ext = features.resolve_extractor("classifier-mnist:1", tracking_uri=uri)
    real = load_split("mnist", "test", str(idx_folder)).images
    fake = features.image_features(ext.shared, len(real), model=share_model(model, mspec),
                                  codes=samplers.prior_codes(model, len(real), 0))
    by_hand = frechet.compare(frechet.Reference.of(
        features.image_features(ext.shared, len(real), images=real)), fake)
    assert m["fid/classifier-mnist-v1"] == pytest.approx(by_hand["fid"], rel=1e-6)
    assert run.data.params["fid/samples"] == str(len(real))
    assert run.data.params["fid/reference"] == f"mnist:test, {len(real)} images"
    assert run.data.params["fid/classifier-mnist-v1/weights_sha256"] == ext.digest
    check_statistics_and_image_inputs(vae.model_uri, model, m, uri, idx_folder, capsys)

    assert fid_verb.main(["--model", vae.model_uri, "--data", "mnist:test", "--data-path",
                          str(idx_folder), "--extractor", "inception",
                          "--tracking-uri", uri]) != 0
    assert "error: --extractor inception needs --inception-weights PATH" in \
        capsys.readouterr().err
    assert fid_verb.main(["--model", vae.model_uri, "--samples", "1"]) == 2
    assert "error: --samples 1: Input should be greater than 1" in \
        capsys.readouterr().err
    with pytest.raises(UserError, match="takes \\(1, 28, 28\\) images"):
        features.resolve_extractor("classifier-mnist", tracking_uri=uri, input_shape=(3, 32, 32))


def run_of(out: str):
    return mlflow.get_run(out.split("MLflow run id: ")[1].split()[0])


def check_statistics_and_image_inputs(model_uri, model, from_data: dict, uri, idx_folder,
                                      capsys):
    """Statistics saved by the verb give the FID from the data back; the model's prior
    samples saved as PNG files or as an array score as the model path scored them."""
    from PIL import Image

    key = "fid/classifier-mnist-v1"
    common = ["--extractor", "classifier-mnist:1", "--tracking-uri", uri, "--experiment", "test"]
    data = ["--data", "mnist:test", "--data-path", str(idx_folder)]
    stats = Path("mnist-test.npz").resolve()
    capsys.readouterr()
    assert fid_verb.main(["--model", model_uri, *data, "--gmm", "0", "--save-ref-stats",
                          str(stats), *common]) == 0
    assert f"wrote {stats}" in capsys.readouterr().out
    n = len(load_split("mnist", "test", str(idx_folder)))
    # without real images the verb draws --samples; as many as the data run had
    assert fid_verb.main(["--model", model_uri, "--ref-stats", str(stats), "--samples", str(n),
                          *common]) == 0
    out = capsys.readouterr().out
    assert "note: gmm: not scored" in out and "no KID" in out
    from_stats = run_of(out)
    m = from_stats.data.metrics
    assert m[key] == pytest.approx(from_data[key], rel=1e-9)
    assert m["variance_loss/delta_var_gen"] == pytest.approx(
        from_data["variance_loss/delta_var_gen"], rel=1e-9)
    assert "kid/classifier-mnist-v1" not in m and f"{key}/gmm" not in m
    assert from_stats.data.params["fid/reference"].startswith(f"{stats} (sha256 ")
    # the statistics alone, without a model, are the same
    assert fid_verb.main([*data, "--save-ref-stats", "alone.npz", *common]) == 0
    with np.load(stats) as a, np.load("alone.npz") as b:
        assert np.array_equal(a["mu"], b["mu"]) and np.array_equal(a["sigma"], b["sigma"])

    codes = torch.as_tensor(samplers.prior_codes(model, n, 0))  # the verb's draws: seed 0
    with torch.no_grad():  # decoded as the verb decodes them: in batches of 500
        floats = torch.cat([model.decode(codes[i:i + 500]) for i in range(0, n, 500)]).numpy()
    samples = np.round(floats * np.float32(255)).astype(np.uint8)  # (n, 1, 28, 28)
    folder = Path("samples")
    folder.mkdir()
    for i, img in enumerate(samples):
        Image.fromarray(img[0]).save(folder / f"{i:05d}.png")
    np.save("samples.npy", floats.transpose(0, 2, 3, 1))  # the raw floats, N H W C
    for path in (folder, "samples.npy"):
        capsys.readouterr()
        assert fid_verb.main(["--images", str(path), *data, *common]) == 0
        run = run_of(capsys.readouterr().out)
        got = run.data.metrics
        # the same 8-bit images in the same batches: the same features, to rounding
        assert got[key] == pytest.approx(from_data[key], rel=1e-6), path
        assert got["kid/classifier-mnist-v1"] == pytest.approx(
            from_data["kid/classifier-mnist-v1"], rel=1e-6, abs=1e-9), path
        assert got["variance_loss/delta_var_gen"] == pytest.approx(
            from_data["variance_loss/delta_var_gen"], abs=1e-6), path
        assert run.data.params["images"] == str(path)
    np.save("rgb.npy", np.repeat(samples, 3, axis=1))
    assert fid_verb.main(["--images", "rgb.npy", *data, *common]) != 0
    assert "error: --images rgb.npy: (3, 28, 28) images, the data are (1, 28, 28)" in \
        capsys.readouterr().err


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
