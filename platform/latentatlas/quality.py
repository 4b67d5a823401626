"""Sample quality: FID and KID between real images and generated ones in a named feature
space, and the variance loss of the samples. The real side is a `Reference`: the Gaussian
of its features (pytorch-fid's `mu`, `sigma`, which a `.npz` file saves and gives back) and,
when computed here, the features themselves (KID needs them). The generated side is a
model's samples or images a user brings; a model's samples are scored as the 8-bit images a
saved PNG would hold, so both sides are scored alike. Samplers turn a model into codes: its
prior, a Gaussian mixture fitted to its codes of real images, or a second stage VAE (raw, or
renormalised by the authors' one scale or by one scale per variable). The features are
computed by the map-over-batches machinery (`latentatlas.batches`): in this process for
small sets, on a Ray Data actor pool at scale."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

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

def as_8bit(x: torch.Tensor) -> torch.Tensor:
    """Generated images in [0, 1] as a saved 8-bit image holds them (round(255 x) / 255), so a
    model's samples and the same samples read back from PNG files score alike."""
    return torch.round(x.clamp(0, 1) * 255) / 255


class ClassifierFeatures(torch.nn.Module):
    """A classifier's penultimate layer, as torchmetrics' custom feature module."""

    def __init__(self, classifier):
        super().__init__()
        self.classifier = classifier
        self.num_features = classifier.num_features

    def forward(self, x):
        return self.classifier.features(x)


def build_extractor(shared: dict, device) -> torch.nn.Module:
    """The feature network an `Extractor.shared` value describes."""
    from latentatlas.inception import load_inception

    shared = resolve(shared)
    if shared["kind"] == "inception":
        return load_inception(shared["state"], device)
    return ClassifierFeatures(shared_model(shared["model"], device)).eval()


class FeatureBatch:
    """Per batch of row ids: features of real images (`split`) or of generated ones
    (`codes` decoded by `model`, as 8-bit images)."""

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
            x = as_8bit(self.model.decode(torch.as_tensor(self.codes[ids], device=self.device)))
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


def uint8_pixel_variance(images: np.ndarray) -> float:
    """`mean_pixel_variance` of uint8 images (N, C, H, W)."""
    return mean_pixel_variance(images[i:i + 1000] / 255.0 for i in range(0, len(images), 1000))


def decoded(model, codes: np.ndarray, batch_size: int = 1000):
    """The 8-bit images `codes` decode to, batch by batch (numpy, in [0, 1])."""
    with torch.no_grad():
        for i in range(0, len(codes), batch_size):
            yield as_8bit(model.decode(torch.as_tensor(codes[i:i + batch_size]))).numpy()


# --- the real side, and the distances ------------------------------------------------------

def sqrt_psd(sigma: np.ndarray) -> np.ndarray:
    """The symmetric square root of a covariance (eigenvalues rounding made negative are 0)."""
    w, v = np.linalg.eigh(sigma)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


@dataclass(frozen=True, eq=False)
class Reference:
    """The real side of FID in one feature space: the Gaussian of its features (`mu`,
    `sigma`: pytorch-fid's statistics), the features themselves when computed here (KID
    needs them; a statistics file holds none), the mean pixel variance of its images (the
    variance loss; None when a file does not carry it), what it is (`described`), and the
    extractor and weights it was computed with (None when a file does not say)."""

    mu: np.ndarray  # (F,) float64
    sigma: np.ndarray  # (F, F) float64
    count: int | None
    described: str  # "fashion-mnist:test, 10000 images" or "<file> (sha256 ...)"
    features: np.ndarray | None = None
    pixel_variance: float | None = None
    extractor: str | None = None
    weights_sha256: str | None = None

    @classmethod
    def of(cls, features: np.ndarray, described: str = "", **known) -> Reference:
        features = np.asarray(features, np.float64)
        return cls(features.mean(0), np.cov(features, rowvar=False), len(features), described,
                   features, **known)

    @cached_property
    def sigma_root(self) -> np.ndarray:  # one per reference, however many samplers it scores
        return sqrt_psd(self.sigma)


def frechet_distance(reference: Reference, mu: np.ndarray, sigma: np.ndarray) -> float:
    """|mu_r - mu|^2 + tr(sigma_r + sigma - 2 (sigma_r sigma)^(1/2)). The trace of the root is
    the sum of the roots of the eigenvalues of sigma_r^(1/2) sigma sigma_r^(1/2), a symmetric
    PSD matrix with the same eigenvalues (eigvalsh: real, stable; pytorch-fid's sqrtm of the
    non-symmetric product needs an offset when it is near singular)."""
    root = reference.sigma_root
    inner = root @ sigma @ root
    eigen = np.linalg.eigvalsh((inner + inner.T) / 2)
    distance = (((reference.mu - mu) ** 2).sum() + np.trace(reference.sigma) + np.trace(sigma)
                - 2 * np.sqrt(np.clip(eigen, 0, None)).sum())
    return max(float(distance), 0.0)  # >= 0 exactly; rounding can leave -1e-12


def compare(reference: Reference, fake: np.ndarray, seed: int = 0) -> dict[str, float]:
    """FID of generated features against the reference, and KID (mean, std over subsets, by
    torchmetrics fed the features) when the reference has its features."""
    fake = np.asarray(fake, np.float64)
    out = {"fid": frechet_distance(reference, fake.mean(0), np.cov(fake, rowvar=False))}
    if reference.features is None:
        return out
    import warnings

    from torchmetrics.image.kid import KernelInceptionDistance

    class Given(torch.nn.Module):  # the features are the input
        num_features = fake.shape[1]

        def forward(self, x):
            return x

    size = min(KID_SUBSET, len(reference.features), len(fake))
    with warnings.catch_warnings():  # "KID will save all extracted features": it must
        warnings.simplefilter("ignore")
        kid = KernelInceptionDistance(feature=Given(), subsets=KID_SUBSETS, subset_size=size)
    kid.update(torch.as_tensor(reference.features), real=True)
    kid.update(torch.as_tensor(fake), real=False)
    with torch.random.fork_rng(devices=[]):  # KID draws its subsets from torch's global RNG
        torch.manual_seed(seed)
        kid_mean, kid_std = kid.compute()
    return {**out, "kid_mean": float(kid_mean), "kid_std": float(kid_std)}


def described_images(dataset: str, split: str, rows: int) -> str:
    """What a reference of real images is of, as its runs record it."""
    return f"{dataset}:{split}, {rows} images"


def reference_of(extractor: Extractor, images: np.ndarray, described: str,
                 **where) -> Reference:
    """The reference of uint8 real `images` (N, C, H, W) in the extractor's space."""
    features = checked_features(image_features(extractor.shared, len(images), images=images,
                                               **where), described)
    return Reference.of(features, described, pixel_variance=uint8_pixel_variance(images),
                        extractor=extractor.name, weights_sha256=extractor.digest)


def checked_features(features: np.ndarray, what: str) -> np.ndarray:
    from latentatlas.errors import UserError

    if not np.isfinite(features).all():
        raise UserError(f"{what}: the feature network returns NaN or inf on these images (a "
                        "model that decodes NaN?)")
    if len(features) < 2:
        raise UserError(f"{what}: {len(features)} image; FID needs at least 2")
    return features


# pytorch-fid's file holds `mu` and `sigma`; these keys say what LatentAtlas knows beside.
STATS_KEYS = ("count", "extractor", "weights_sha256", "described", "pixel_variance")


def write_reference(reference: Reference, path: str | Path,
                    role: str = "--save-ref-stats") -> Path:
    """`reference` as pytorch-fid's `.npz` (`mu`, `sigma`, float64) with LatentAtlas' own keys
    beside; written to a temporary file and renamed, or not at all."""
    from latentatlas.errors import UserError

    path = Path(path)
    known = {k: getattr(reference, k) for k in STATS_KEYS if getattr(reference, k) is not None}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a name
            np.savez(f, mu=reference.mu, sigma=reference.sigma, **known)
        os.replace(tmp, path)
    except OSError as e:
        raise UserError(f"{role} {path}: cannot write it ({e.strerror or e})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def check_writable(path: str | Path, role: str = "--save-ref-stats") -> Path:
    """Refuses, before any work, a path `write_reference` could not write."""
    from latentatlas.errors import UserError

    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{role} {path}: a folder; give a file name (e.g. ref.npz)")
    if not path.parent.is_dir():
        raise UserError(f"{role} {path}: no such folder {path.parent}")
    if not os.access(path.parent, os.W_OK):
        raise UserError(f"{role} {path}: the folder {path.parent} is not writable")
    return path


def stats_value(arrays: dict, key: str, where: str):
    """One of LatentAtlas' own keys of a statistics file, checked: a 0-d count >= 2, a
    finite pixel variance in [0, 0.25] (images in [0, 1]), or a string."""
    from latentatlas.errors import UserError

    value = arrays[key]
    kind = {"count": "an integer of at least 2", "pixel_variance": "a number in [0, 0.25]"}.get(
        key, "a string")
    if value.ndim == 0:
        if key == "count" and np.issubdtype(value.dtype, np.integer) and value >= 2:
            return int(value)
        if key == "pixel_variance" and np.issubdtype(value.dtype, np.floating) and \
                np.isfinite(value) and 0 <= value <= 0.25:
            return float(value)
        if key not in ("count", "pixel_variance") and value.dtype.kind == "U":
            return str(value)
    raise UserError(f"{where}: key {key!r} is {value.dtype} {value.shape} ({value!r:.40}), not "
                    f"{kind}")


def read_reference(path: str | Path, extractor: Extractor, role: str = "--ref-stats"
                   ) -> Reference:
    """A `.npz` of `mu` and `sigma` (pytorch-fid's, or ours) checked against the extractor:
    shapes, finite values, a symmetric positive semi-definite sigma, LatentAtlas' own keys
    where present and, where the file says, the same extractor and weights; one line naming
    the file and what is wrong otherwise."""
    from latentatlas.errors import UserError

    path = Path(path).expanduser()
    where = f"{role} {path}"
    if not path.is_file():
        raise UserError(f"{where}: file not found")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:  # not a zip, truncated, pickled objects
        raise UserError(f"{where}: not a .npz of arrays ({str(e).splitlines()[0][:100]})") \
            from None
    for key in ("mu", "sigma"):
        if key not in arrays:
            raise UserError(f"{where}: no {key!r} array (pytorch-fid's statistics hold mu and "
                            f"sigma; found {', '.join(sorted(arrays)) or 'nothing'})")
    mu, sigma = (np.asarray(arrays[k], np.float64) for k in ("mu", "sigma"))
    width = extractor.features
    if mu.shape != (width,) or sigma.shape != (width, width):
        raise UserError(f"{where}: mu {mu.shape} and sigma {sigma.shape}; {extractor.name} "
                        f"has {width} features, so ({width},) and ({width}, {width})")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise UserError(f"{where}: mu or sigma holds NaN or inf")
    scale = np.abs(sigma).max()
    if not np.allclose(sigma, sigma.T, rtol=1e-6, atol=1e-9 * scale):
        raise UserError(f"{where}: sigma is not symmetric, so not a covariance")
    lowest = np.linalg.eigvalsh(sigma).min()
    if lowest < -1e-6 * scale:  # a covariance has none below 0 but rounding's
        raise UserError(f"{where}: sigma has eigenvalue {lowest:.3g} < 0, so not a covariance")
    known = {k: stats_value(arrays, k, where) for k in STATS_KEYS if k in arrays}
    for key, ours in (("extractor", extractor.name), ("weights_sha256", extractor.digest)):
        if key in known and known[key] != ours:
            raise UserError(f"{where}: computed with {key} {known[key]}, the extractor here "
                            f"has {ours}: features of other networks are not comparable")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    of = f": {known['described']}" if "described" in known else \
        (f", {known['count']} images" if "count" in known else "")
    return Reference(mu, sigma, known.get("count"), f"{path} (sha256 {digest}){of}",
                     pixel_variance=known.get("pixel_variance"), extractor=known.get("extractor"),
                     weights_sha256=known.get("weights_sha256"))


# --- extractors by name, and the scores of samplers ----------------------------------------

@dataclass(frozen=True)
class Extractor:
    """A resolved feature network: `name` is what metric keys carry (a classifier's pinned
    registry version included: features of two versions are not comparable); `digest`, the
    sha256 of its weights; `resize`, what it does to an image's size before its layers."""

    name: str  # classifier-fashion-mnist-v2, inception
    source: str  # models:/classifier-fashion-mnist/2, or the weights file
    shared: dict  # what `build_extractor` takes
    digest: str
    features: int
    resize: str
    antialias: bool = False


def classifier_name(dataset: str) -> str:
    return f"classifier-{dataset}"


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 of a state dict's names, dtypes, shapes and values (the same on any machine)."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


EXTRACTOR_KINDS = "classifier-<dataset>[:version], inception"


def resolve_extractor(address: str, *, inception_weights: str | None = None,
                      tracking_uri: str | None = None, role: str = "--extractor",
                      input_shape=None) -> Extractor:
    """`classifier-<dataset>` (the registry's latest version unless `:version` pins one), or
    `inception` from a local weights file; one line naming the option when it cannot be."""
    from latentatlas.errors import UserError

    if address == "inception":
        from latentatlas import inception

        if not inception_weights:
            raise UserError(f"{role} inception needs --inception-weights PATH (the "
                            "pt_inception-2015-12-05 file of pytorch-fid or torch-fidelity); "
                            "LatentAtlas never downloads it")
        state = inception.read_inception_weights(inception_weights)
        # the file's digest names the file; the state's, the network (pytorch-fid's and
        # torch-fidelity's files hold the same weights)
        file_digest = hashlib.sha256(Path(inception_weights).expanduser().read_bytes())
        return Extractor("inception", f"{inception_weights} (file sha256 "
                                      f"{file_digest.hexdigest()[:12]})",
                         {"kind": "inception", "state": state}, state_digest(state),
                         inception.FEATURES, inception.RESIZE, inception.ANTIALIAS)
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
    shape = "x".join(str(n) for n in spec["input_shape"][1:])
    return Extractor(f"{name}-v{version}", source,
                     {"kind": "classifier", "model": share_model(model, spec)},
                     state_digest(model.state_dict()), model.num_features,
                     f"none (takes {shape} images)")


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


def fid_params(extractors: list[Extractor], samples: int, reference: str) -> dict[str, object]:
    """What an FID depends on beside the images, as run params: per extractor its source,
    weights digest and resize; the generated images per sampler; the reference; that
    generated images are scored as 8-bit images."""
    params = {"fid/extractors": ",".join(e.name for e in extractors), "fid/samples": samples,
              "fid/reference": reference, "fid/generated_as": "uint8 (round(255 x))"}
    for e in extractors:
        params |= {f"fid/{e.name}/source": e.source, f"fid/{e.name}/weights_sha256": e.digest,
                   f"fid/{e.name}/features": e.features, f"fid/{e.name}/resize": e.resize,
                   f"fid/{e.name}/antialias": e.antialias}
    return params


def score_images(extractor: Extractor, reference: Reference, images: np.ndarray,
                 what: str = "--images", seed: int = 0, **where) -> dict[str, float]:
    """FID, KID and variance loss of uint8 `images` (N, C, H, W) against the reference."""
    fake = checked_features(image_features(extractor.shared, len(images), images=images,
                                           **where), what)
    return scored(reference, fake, uint8_pixel_variance(images), seed)


def scored(reference: Reference, fake: np.ndarray, pixel_variance: float,
           seed: int) -> dict[str, float]:
    out = compare(reference, fake, seed)
    if reference.pixel_variance is not None:
        out["delta_var_gen"] = reference.pixel_variance - pixel_variance
    return out


def score_samplers(extractor: Extractor, reference: Reference, model, spec: dict,
                   samplers: dict[str, np.ndarray], seed: int = 0, **where) -> dict[str, dict]:
    """Per sampler (name -> codes the model decodes): FID, KID (mean, std) against the
    reference in the extractor's space, and the variance loss of its samples (mean pixel
    variance of the real images minus that of the samples), each where the reference allows.
    `model` and its logged `spec`; `where`: actors, use_gpu, here (as `image_features`)."""
    from latentatlas.models import share_model

    shared = share_model(model, spec)
    scores = {}
    for name, codes in samplers.items():
        fake = image_features(extractor.shared, len(codes), model=shared,
                              codes=np.asarray(codes, np.float32), **where)
        scores[name] = scored(reference, checked_features(fake, f"sampler {name}"),
                              mean_pixel_variance(decoded(model, codes)), seed)
    return scores


# The generated side's sampler whose metric keys carry no suffix.
UNSUFFIXED = ("prior", "images")


def quality_metrics(extractor: str, scores: dict[str, dict]) -> dict[str, float]:
    """Metric keys: `fid/<extractor>`, `kid/<extractor>`, `kid_std/<extractor>` and
    `variance_loss/delta_var_gen` for the prior (or the images scored); other samplers append
    `/<sampler>`; a score the reference cannot give (KID from a statistics file) is absent."""
    names = {"fid": f"fid/{extractor}", "kid_mean": f"kid/{extractor}",
             "kid_std": f"kid_std/{extractor}", "delta_var_gen": "variance_loss/delta_var_gen"}
    out = {}
    for sampler, s in scores.items():
        tail = "" if sampler in UNSUFFIXED else f"/{sampler}"
        out.update({f"{names[k]}{tail}": v for k, v in s.items()})
    return out
