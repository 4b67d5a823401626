"""Sample quality: FID and KID (torchmetrics) between real images and a generator's samples in
a named feature space, and the variance loss of the samples. Samplers turn a model into
codes: its prior, a Gaussian mixture fitted to its codes of real images, or a second stage
VAE (raw, or renormalised by the authors' one scale or by one scale per variable). The
features are computed by the map-over-batches machinery (`latentatlas.batches`): in this
process for small sets, on a Ray Data actor pool at scale."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from latentatlas.batches import default_actors, id_batches, map_with_actors, resolve, runs_here
from latentatlas.encode.pipeline import device_for, shared_model
from latentatlas.images import to_unit_float

KID_SUBSET = 1000  # torchmetrics' default subset size (capped by the set sizes)
KID_SUBSETS = 100


# --- samplers: (n, seed) -> codes the model decodes ------------------------------------

def prior_codes(model, n: int, seed: int) -> np.ndarray:
    """The model's own prior: N(0, I) for a VAE, noise through the mapping for a GAN."""
    with torch.no_grad():
        return model.sample_codes(n, torch.Generator().manual_seed(seed)).cpu().numpy()


@dataclass(frozen=True)
class Mixture:
    """A Gaussian mixture with full covariances (scikit-learn's fit, kept as plain arrays)."""

    weights: np.ndarray  # (K,)
    means: np.ndarray  # (K, d)
    covariances: np.ndarray  # (K, d, d)


def fit_mixture(codes: np.ndarray, components: int, seed: int) -> Mixture:
    """Split-VAE's sampler: a GMM fitted to codes of real images (at most one component per
    two rows)."""
    from sklearn.mixture import GaussianMixture

    k = max(1, min(components, len(codes) // 2))
    gmm = GaussianMixture(k, covariance_type="full", random_state=seed, reg_covar=1e-6)
    gmm.fit(np.asarray(codes, np.float64))
    return Mixture(gmm.weights_, gmm.means_, gmm.covariances_)


def mixture_codes(mixture: Mixture, n: int, seed: int) -> np.ndarray:
    """n draws, in random component order (scikit-learn's `sample` returns them grouped)."""
    rng = np.random.default_rng(seed)
    component = rng.choice(len(mixture.weights), size=n, p=mixture.weights / mixture.weights.sum())
    chol = np.linalg.cholesky(mixture.covariances)
    eps = rng.standard_normal((n, mixture.means.shape[1]))
    return (mixture.means[component]
            + np.einsum("nij,nj->ni", chol[component], eps)).astype(np.float32)


@torch.no_grad()
def posterior_means(model, images: np.ndarray, batch: int = 1024) -> np.ndarray:
    """A VAE's posterior means of uint8 images."""
    return np.concatenate([model.encode(to_unit_float(images[i:i + batch]))[0].numpy()
                           for i in range(0, len(images), batch)])


def gmm_codes(model, images: np.ndarray, components: int, n: int, seed: int) -> np.ndarray:
    """n draws from a GMM fitted to a VAE's posterior means of `images`; the fit runs in a
    Ray task when Ray is up (scikit-learn holds one core for seconds)."""
    import ray

    mu = posterior_means(model, images)
    fit = (ray.get(ray.remote(fit_mixture).remote(mu, components, seed))
           if ray.is_initialized() else fit_mixture(mu, components, seed))
    return mixture_codes(fit, n, seed)


# Renormalising second-stage samples. The first stage's codes z ~ q(z|x) have, per variable j,
# variance var(mu_j) + mean(sigma_j^2) (the variance law, with sigma^2); a second stage's
# samples lose some of it (its own variance loss), and a rescaling about 0 gives it back.
# A variable the samples hold constant has no spread a scale can set: it is left as it is
# (dividing by its std, 0 or a rounding residue, would send it off to huge values).

def sample_spread(codes: np.ndarray) -> np.ndarray:
    """Per variable, the standard deviation of `codes` (n, d), float64; exactly 0 where every
    row holds the same value."""
    codes = np.asarray(codes, np.float64)
    return np.where(codes.max(axis=0) == codes.min(axis=0), 0.0, codes.std(axis=0))


def code_variance(var_mu, mean_sigma2) -> np.ndarray:
    """Per variable, the variance of the first stage's posterior draws: var(mu) + mean(sigma^2)."""
    return np.asarray(var_mu, np.float64) + np.asarray(mean_sigma2, np.float64)


def renormalise_authors(codes: np.ndarray, var_mu, mean_sigma2) -> np.ndarray:
    """Asperti's renormalisation (the variance-loss paper, the authors' BalancingVAE code):
    ONE scale for every variable, making the mean per-variable std of the samples
    adjust = sqrt(mean(var(mu) + mean(sigma^2))). The scale is sized by all variables: where
    the second stage collapses the inactive variables' noise (it cannot reproduce it), the
    active ones are inflated to make up for them. Codes all constant are left as they are."""
    adjust = np.sqrt(code_variance(var_mu, mean_sigma2).mean())
    mean_std = sample_spread(codes).mean()
    return (codes * (adjust / mean_std if mean_std > 0 else 1.0)).astype(np.float32)


def renormalise_per_variable(codes: np.ndarray, var_mu, mean_sigma2) -> np.ndarray:
    """Each variable j scaled to its own first-stage spread sqrt(var(mu_j) + mean(sigma_j^2)):
    a collapsed inactive variable gets its noise back without inflating the active ones,
    and the correlations between variables are kept. A variable the samples hold constant is
    left as it is."""
    std = sample_spread(codes)
    target = np.sqrt(code_variance(var_mu, mean_sigma2))
    scale = np.divide(target, std, out=np.ones_like(std), where=std > 0)
    return (codes * scale).astype(np.float32)


def second_stage_codes(stage2, n: int, seed: int) -> np.ndarray:
    """u ~ N(0, I) -> the second stage's decoder -> first-stage codes."""
    with torch.no_grad():
        u = torch.randn(n, stage2.latent_dim, generator=torch.Generator().manual_seed(seed))
        return stage2.decode(u).numpy()


# --- features ----------------------------------------------------------------------------

class ClassifierFeatures(torch.nn.Module):
    """A classifier's penultimate layer, as torchmetrics' custom feature module."""

    def __init__(self, classifier):
        super().__init__()
        self.classifier = classifier
        self.num_features = classifier.num_features

    def forward(self, x):
        return self.classifier.features(x)


def build_extractor(shared: dict, device) -> torch.nn.Module:
    """The feature network an `extractor` value (`features.resolve_extractor`) describes."""
    from latentatlas.inception import load_inception

    shared = resolve(shared)
    if shared["kind"] == "inception":
        return load_inception(shared["state"], device)
    return ClassifierFeatures(shared_model(shared["model"], device)).eval()


class FeatureBatch:
    """Per batch of row ids: features of real images (`split`) or of generated ones
    (`codes` decoded by `model`)."""

    def __init__(self, extractor, images=None, model=None, codes=None, use_gpu: bool = False):
        self.device = device_for(use_gpu)
        self.extractor = build_extractor(extractor, self.device)
        self.images = None if images is None else resolve(images)
        self.model = None if model is None else shared_model(model, self.device)
        self.codes = None if codes is None else resolve(codes)

    @torch.no_grad()
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids = np.asarray(batch["id"])
        if self.images is not None:
            x = to_unit_float(self.images[ids], self.device)
        else:
            x = self.model.decode(torch.as_tensor(self.codes[ids], device=self.device))
        return {"id": ids, "features": self.extractor(x).cpu().numpy()}


def image_features(extractor: dict, rows: int, *, images=None, model=None, codes=None,
                   batch_size: int = 500, actors: int | None = None, use_gpu: bool = False,
                   here: bool | None = None) -> dict[str, np.ndarray]:
    """The features (rows, F) of uint8 `images` or of `codes` decoded by `model` (a
    `share_model` value), in row order."""
    here = runs_here(rows, use_gpu) and actors is None if here is None else here
    if not here:
        actors = actors or default_actors(use_gpu)
    shared = {"extractor": extractor, **({"images": images} if images is not None else
                                        {"model": model, "codes": codes})}
    source = id_batches(rows, batch_size, here=here, blocks=None if here else 2 * actors)
    parts = map_with_actors(source, FeatureBatch, batch_size=batch_size, actors=actors,
                            use_gpu=use_gpu, shared=shared)
    return parts["features"][np.argsort(parts["id"], kind="stable")]


def mean_pixel_variance(images) -> float:
    """mean over pixels of var(x, axis=0), streamed over batches of images in [0, 1]
    (float64 sums; a batch is (n, ...))."""
    n, total, squares = 0, 0.0, 0.0
    for batch in images:
        flat = np.asarray(batch, np.float64).reshape(len(batch), -1)
        n, total, squares = n + len(flat), total + flat.sum(0), squares + (flat**2).sum(0)
    mean = total / n
    return float((squares / n - mean**2).mean())


def decoded(model, codes: np.ndarray, batch_size: int = 1000):
    """The images `codes` decode to, batch by batch (numpy, in [0, 1])."""
    with torch.no_grad():
        for i in range(0, len(codes), batch_size):
            yield model.decode(torch.as_tensor(codes[i:i + batch_size])).numpy()


def fid_kid(real: np.ndarray, fake: np.ndarray, seed: int = 0) -> dict[str, float]:
    """FID and KID (mean, std over subsets) of two feature sets, by torchmetrics' metrics fed
    the features themselves (the feature network ran before, on Ray Data or here)."""
    import warnings

    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    class Given(torch.nn.Module):  # the features are the input
        num_features = real.shape[1]

        def forward(self, x):
            return x

    real_t, fake_t = (torch.as_tensor(np.asarray(f, np.float64)) for f in (real, fake))
    fid = FrechetInceptionDistance(feature=Given())
    size = min(KID_SUBSET, len(real), len(fake))
    with warnings.catch_warnings():  # "KID will save all extracted features": it must
        warnings.simplefilter("ignore")
        kid = KernelInceptionDistance(feature=Given(), subsets=KID_SUBSETS, subset_size=size)
    for metric in (fid, kid):
        metric.update(real_t, real=True)
        metric.update(fake_t, real=False)
    with torch.random.fork_rng(devices=[]):  # KID draws its subsets from torch's global RNG
        torch.manual_seed(seed)
        kid_mean, kid_std = kid.compute()
    return {"fid": float(fid.compute()), "kid_mean": float(kid_mean), "kid_std": float(kid_std)}


# --- extractors by name, and the scores of samplers ----------------------------------------

@dataclass(frozen=True)
class Extractor:
    """A resolved feature network: `name` is what metric keys carry (a classifier's pinned
    registry version included: features of two versions are not comparable)."""

    name: str  # classifier-fashion-mnist-v2, inception
    source: str  # models:/classifier-fashion-mnist/2, or the weights file and its digest
    shared: dict  # what `build_extractor` takes


def classifier_name(dataset: str) -> str:
    return f"classifier-{dataset}"


EXTRACTOR_KINDS = "classifier-<dataset>[:version], inception"


def resolve_extractor(address: str, *, inception_weights: str | None = None,
                      tracking_uri: str | None = None, role: str = "--extractor",
                      input_shape=None) -> Extractor:
    """`classifier-<dataset>` (the registry's latest version unless `:version` pins one), or
    `inception` from a local weights file; one line naming the option when it cannot be."""
    import hashlib

    from latentatlas.errors import UserError

    if address == "inception":
        from latentatlas.inception import read_inception_weights

        if not inception_weights:
            raise UserError(f"{role} inception needs --inception-weights PATH (the "
                            "pt_inception-2015-12-05 file of pytorch-fid or torch-fidelity); "
                            "LatentAtlas never downloads it")
        state = read_inception_weights(inception_weights)
        with open(inception_weights, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:12]
        return Extractor("inception", f"{inception_weights} (sha256 {digest})",
                         {"kind": "inception", "state": state})
    if not address.startswith("classifier-"):
        raise UserError(f"{role} {address}: unknown feature extractor; known: "
                        f"{EXTRACTOR_KINDS}")
    from mlflow import MlflowClient

    from latentatlas import tracking
    from latentatlas.models import Classifier, share_model

    name, _, version = address.partition(":")
    uri = tracking.resolve_tracking_uri(tracking_uri)
    if not version:
        versions = MlflowClient(uri).search_model_versions(f"name = '{name}'")
        if not versions:
            raise UserError(f"{role} {name}: no such model in the registry of {uri}; train "
                            "one (latentatlas train jobs/configs/fmnist_classifier.yaml "
                            "--set data.name=...)")
        version = str(max(int(v.version) for v in versions))
    source = f"models:/{name}/{version}"
    model, spec = tracking.load_model(source, tracking_uri=uri, role=role)
    if not isinstance(model, Classifier):
        raise UserError(f"{role} {source}: a {spec['model']['name']}, not a classifier")
    if input_shape is not None and tuple(spec["input_shape"]) != tuple(input_shape):
        raise UserError(f"{role} {source}: takes {tuple(spec['input_shape'])} images, the "
                        f"images scored are {tuple(input_shape)}")
    return Extractor(f"{name}-v{version}", source,
                     {"kind": "classifier", "model": share_model(model, spec)})


def classifier_extractor(uri: str, *, tracking_uri: str | None = None,
                         role: str = "--classifier", input_shape=None) -> Extractor:
    """A classifier by its MLflow address: `models:/<name>/<version>`, or `runs:/<id>/model`
    of the training that registered it; named, as `resolve_extractor` names it, by that
    pinned version."""
    from mlflow import MlflowClient

    from latentatlas import tracking
    from latentatlas.errors import UserError

    registered = uri
    if uri.startswith("runs:/"):
        store = tracking.resolve_tracking_uri(tracking_uri)
        try:
            tags = MlflowClient(store).get_run(uri.removeprefix("runs:/").split("/")[0]).data.tags
        except Exception:  # MLflow raises several types for a missing run
            raise UserError(f"{role} {uri}: no such run in {store}") from None
        registered = tags.get("latentatlas.registered", "")
    name, _, version = registered.removeprefix("models:/").partition("/")
    if not (registered.startswith("models:/") and version.isdigit()):
        raise UserError(f"{role} {uri}: not a registered classifier; give models:/<name>/<version>"
                        " or the runs:/<id>/model of `latentatlas train "
                        "jobs/configs/fmnist_classifier.yaml`")
    return resolve_extractor(f"{name}:{version}", tracking_uri=tracking_uri, role=role,
                             input_shape=input_shape)


def score_samplers(extractor: Extractor, real_images: np.ndarray, model, spec: dict,
                   samplers: dict[str, np.ndarray], seed: int = 0, **where) -> dict[str, dict]:
    """Per sampler (name -> codes the model decodes): FID, KID (mean, std) against
    `real_images` (uint8) in the extractor's space, and the variance loss of its samples
    (mean pixel variance of the real images minus that of the samples). `model` and its
    logged `spec`; `where`: actors, use_gpu, here (as `image_features`)."""
    from latentatlas.models import share_model

    real = image_features(extractor.shared, len(real_images), images=real_images, **where)
    real_var = mean_pixel_variance(real_images[i:i + 1000] / 255.0
                                   for i in range(0, len(real_images), 1000))
    shared = share_model(model, spec)
    scores = {}
    for name, codes in samplers.items():
        fake = image_features(extractor.shared, len(codes), model=shared,
                              codes=np.asarray(codes, np.float32), **where)
        scores[name] = {**fid_kid(real, fake, seed),
                        "delta_var_gen": real_var - mean_pixel_variance(decoded(model, codes))}
    return scores


def quality_metrics(extractor: str, scores: dict[str, dict]) -> dict[str, float]:
    """Metric keys: `fid/<extractor>`, `kid/<extractor>`, `kid_std/<extractor>` and
    `variance_loss/delta_var_gen` for the prior; other samplers append `/<sampler>`."""
    out = {}
    for sampler, s in scores.items():
        tail = "" if sampler == "prior" else f"/{sampler}"
        out.update({f"fid/{extractor}{tail}": s["fid"], f"kid/{extractor}{tail}": s["kid_mean"],
                    f"kid_std/{extractor}{tail}": s["kid_std"],
                    f"variance_loss/delta_var_gen{tail}": s["delta_var_gen"]})
    return out
