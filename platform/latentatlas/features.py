"""Feature spaces of FID and KID: a named extractor (a platform-trained classifier looked up in
the MLflow model registry, or Inception from a local weights file), its features of images or
of a model's decoded codes (the 8-bit images a saved PNG would hold), computed in this process
for small sets, on a Ray Data actor pool at scale (latentatlas.batches)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from latentatlas.batches import default_actors, id_batches, map_with_actors, resolve, runs_here
from latentatlas.encode.pipeline import device_for, shared_model
from latentatlas.images import to_unit_float


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

    from latentatlas import environment, model_store
    from latentatlas.models import Classifier, share_model

    name, _, version = address.partition(":")
    uri = environment.resolve_tracking_uri(tracking_uri)
    if not version:
        versions = MlflowClient(uri).search_model_versions(f"name = '{name}'")
        if not versions:
            raise UserError(f"{role} {name}: no such model in the registry of {uri}; train "
                            "one (latentatlas train jobs/configs/fmnist_classifier.yaml "
                            "--set data.name=...)")
        version = str(max(int(v.version) for v in versions))
    source = f"models:/{name}/{version}"
    model, spec = model_store.load_model(source, tracking_uri=uri, role=role)
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

    from latentatlas import environment
    from latentatlas.errors import UserError

    registered = uri
    if uri.startswith("runs:/"):
        store = environment.resolve_tracking_uri(tracking_uri)
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
