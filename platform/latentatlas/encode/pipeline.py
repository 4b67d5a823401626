"""`encode`: Ray Data batch inference (an actor pool holding the model) into Parquet."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import ray
import torch

from latentatlas import __version__
from latentatlas.data import load_split
from latentatlas.encode.store import Encoding, EncodingMeta, publish, temp_sibling
from latentatlas.errors import UserError
from latentatlas.images import to_unit_float
from latentatlas.models import rebuild_vae


def device_for(use_gpu: bool) -> torch.device:
    return torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")


def share_model(model: torch.nn.Module, spec: dict):
    """The object-store reference actors rebuild a loaded VAE from: its spec and CPU weights.
    Actors then need neither MLflow (seconds to import and download) nor the model store."""
    return ray.put({"spec": spec, "state": {k: v.detach().cpu()
                                            for k, v in model.state_dict().items()}})


def shared_model(model_ref, device: torch.device) -> torch.nn.Module:
    """The VAE behind a `share_model` reference, on `device`."""
    shared = ray.get(model_ref)
    return rebuild_vae(shared["spec"], shared["state"], device)


class SplitModel:
    """Actor state shared by the pipelines: a VAE and one dataset split in memory."""

    def __init__(self, model_ref, split_ref, use_gpu: bool = False):
        self.device = device_for(use_gpu)
        self.model = shared_model(model_ref, self.device)
        self.split = ray.get(split_ref)

    def images(self, index: np.ndarray) -> torch.Tensor:
        return to_unit_float(self.split.images[np.asarray(index)], self.device)


class EncodeBatch(SplitModel):
    @torch.no_grad()
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        index = batch["id"]
        mu, logvar = self.model.encode(self.images(index))
        out = {"index": index, "label": self.split.labels[index],
               "mu": mu.cpu().numpy(), "logvar": logvar.cpu().numpy()}
        for name, values in self.split.attrs.items():
            out[name] = values[index]
        return out


# Inference actors reserve half a CPU (they run one torch thread): a pool as large as the
# cluster's CPU count must still leave room for the read and write tasks around it, or
# the pipeline starves.
ACTOR_CPUS = 0.5


def map_with_actors(ds, fn_class, *, batch_size: int, actors: int, use_gpu: bool = False,
                    **constructor_kwargs):
    """`ds.map_batches` through a pool of `actors` instances of `fn_class` (GPU when asked):
    the one way this platform runs a model over data."""
    from latentatlas import runtime

    if use_gpu:
        runtime.check_resources({"GPU": 1}, "--use-gpu")
    resources = {"num_gpus": 1, "num_cpus": 1} if use_gpu else {"num_cpus": ACTOR_CPUS}
    restarts = {}
    if runtime.STARTED_HERE:
        # Ray Data restarts dead actors by default, and Ray then logs an error line for
        # every pool ("constructor arguments in the object store and max_restarts > 0"). On
        # the local instance this process started, an actor dies only of the machine's own
        # trouble (the OOM killer): fail the step instead. On a cluster a lost node's actors
        # restart. Ray 2.60 takes max_restarts only through its deprecated ray_remote_args.
        restarts = {"max_restarts": 0}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated")
        return ds.map_batches(fn_class, batch_size=batch_size, **resources, **restarts,
                              fn_constructor_kwargs={**constructor_kwargs,
                                                     "use_gpu": use_gpu},
                              compute=ray.data.ActorPoolStrategy(size=actors))


def default_actors(use_gpu: bool) -> int:
    resources = ray.cluster_resources()
    return max(1, int(resources.get("GPU", 0) if use_gpu else resources.get("CPU", 1)))


def model_run_id(model_uri: str) -> str | None:
    return model_uri.split("/")[1] if model_uri.startswith("runs:/") else None


def encode(model_uri: str, dataset: str, split: str, out: str | Path, *,
           data_path: str | None = None, limit: int | None = None, batch_size: int = 1024,
           actors: int | None = None, blocks: int | None = None, use_gpu: bool = False,
           tracking_uri: str | None = None) -> Encoding:
    from latentatlas import tracking  # the driver's side only: actors never import MLflow

    out = Path(out).resolve()
    model, spec = tracking.load_vae(model_uri, tracking_uri=tracking_uri)
    data = load_split(dataset, split, data_path, limit)
    if tuple(spec["input_shape"]) != data.shape:
        raise UserError(f"--data {dataset}:{split}: images are {data.shape} but the model "
                        f"expects {tuple(spec['input_shape'])}")
    actors = actors or default_actors(use_gpu)
    rows = ray.data.range(len(data), override_num_blocks=blocks or max(actors * 2, 1))
    codes = map_with_actors(rows, EncodeBatch, batch_size=batch_size, actors=actors,
                            use_gpu=use_gpu, model_ref=share_model(model, spec),
                            split_ref=ray.put(data))
    tmp = temp_sibling(out)
    try:
        codes.write_parquet(str(tmp))
        meta = EncodingMeta(model_uri, model_run_id(model_uri), dataset, split, data_path,
                            limit, len(data), model.latent_dim, __version__, tuple(data.shape),
                            tuple(sorted(data.attrs)))
        return publish(tmp, out, meta)
    finally:
        if tmp.exists():  # a failed run leaves nothing half-written
            shutil.rmtree(tmp)
