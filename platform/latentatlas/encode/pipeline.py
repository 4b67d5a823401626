"""`encode`: Ray Data batch inference (an actor pool holding the model) into Parquet: a VAE's
posterior, or a generator's codes recovered by a recoder and gradient inversion."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from latentatlas import __version__, environment
from latentatlas.batches import (
    actor_map,
    concat,
    default_actors,
    id_batches,
    resolve,
    runs_here,
)
from latentatlas.data import load_split
from latentatlas.encode.store import Encoding, EncodingMeta, publish, temp_sibling
from latentatlas.errors import UserError
from latentatlas.images import to_unit_float
from latentatlas.inversion import NO_REFINEMENT, Refinement, invert_by_gradient, starting_codes
from latentatlas.models import (
    GAN,
    VAE,
    ExternalGenerator,
    ExternalRecoder,
    Recoder,
    inverts,
    rebuild_model,
    share_model,
)
from latentatlas.outputs import writing


def device_for(use_gpu: bool) -> torch.device:
    return torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")


def shared_model(shared, device: torch.device) -> torch.nn.Module:
    """The model a `share_model` value (or its object-store reference) describes, on `device`."""
    shared = resolve(shared)
    return rebuild_model(shared["spec"], shared["state"], device)


class SplitModel:
    """Worker state shared by the passes: a VAE and one dataset split in memory."""

    def __init__(self, model, split, use_gpu: bool = False):
        self.device = device_for(use_gpu)
        self.model = shared_model(model, self.device)
        self.split = resolve(split)

    def images(self, index: np.ndarray) -> torch.Tensor:
        return to_unit_float(self.split.images[np.asarray(index)], self.device)


class EncodeBatch(SplitModel):
    """A VAE's codes: posterior means and log-variances."""

    def item_columns(self, index: np.ndarray) -> dict[str, np.ndarray]:
        out = {"index": index, "label": self.split.labels[index]}
        for name, values in self.split.attrs.items():
            out[name] = values[index]
        return out

    @torch.no_grad()
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        index = batch["id"]
        mu, logvar = self.model.encode(self.images(index))
        return {**self.item_columns(index), "mu": mu.cpu().numpy(),
                "logvar": logvar.cpu().numpy()}


class InvertBatch(EncodeBatch):
    """A generator's codes of images: a first guess (the recoder's; else the model's own
    encoder, a VAE's posterior mean; else the mean code), refined by gradient inversion when
    asked; with each image's pixel MSE of the guess and after inversion."""

    def __init__(self, model, split, recoder=None, refine: Refinement = NO_REFINEMENT,
                 use_gpu: bool = False):
        super().__init__(model, split, use_gpu)
        self.model.requires_grad_(False)
        self.recoder = None if recoder is None else shared_model(recoder, self.device)
        self.refine = refine

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        index = batch["id"]
        x = self.images(index)
        with torch.no_grad():
            start = self.guess(x)
        codes, guessed = invert_by_gradient(self.model.decode, x, start, 0)
        error = guessed
        if self.refine.steps:
            codes, error = invert_by_gradient(self.model.decode, x, start, self.refine.steps,
                                              self.refine.lr, self.refine.loss)
        return {**self.item_columns(index), "mu": codes.cpu().numpy(),
                "guess_mse": guessed.cpu().numpy(), "inversion_mse": error.cpu().numpy()}

    def guess(self, x: torch.Tensor) -> torch.Tensor:
        if self.recoder is not None:
            return self.recoder(x)
        if isinstance(self.model, VAE):
            return self.model.encode(x)[0]
        if getattr(self.model, "has_encoder", False):  # a user's generator with encode(x)
            return self.model.encode(x)
        return starting_codes(self.model, len(x), self.device)


ROW_GROUP = 8192  # rows per Parquet row group: readers of an index range skip the others


def write_here(tmp: Path, encode_batch, rows: int, batch_size: int) -> None:
    """The codes of `rows` items encoded in this process, as shards of up to
    LATENTATLAS_SHARD_ROWS rows (index-ordered) with the columns and tensor types Ray Data
    writes. By default a split up to LATENTATLAS_LOCAL_ROWS is one shard; smaller shards
    give Ray Data readers more parallel files."""
    from ray.data.extensions import ArrowTensorArray

    codes = concat(encode_batch(batch) for batch in id_batches(rows, batch_size, here=True))
    tmp.mkdir()
    shard = environment.shard_rows()
    for n, start in enumerate(range(0, rows, shard)):
        part = {k: v[start:start + shard] for k, v in codes.items()}
        table = pa.table({k: ArrowTensorArray.from_numpy(v) if v.ndim > 1 else v
                          for k, v in part.items()})
        pq.write_table(table, tmp / f"part-{n:05d}.parquet", row_group_size=ROW_GROUP)


def model_run_id(model_uri: str) -> str | None:
    return model_uri.split("/")[1] if model_uri.startswith("runs:/") else None


def encoder_for(model_uri: str, model, spec: dict, recoder_uri: str | None,
                refine: Refinement, tracking_uri: str | None) -> tuple[type, dict, dict]:
    """(map class, shared values, meta fields) for a VAE, or for a generator with its
    recoder and/or gradient refinement; one clear line for a pairing that cannot work."""
    from latentatlas import model_store

    name = spec["model"]["name"]
    if isinstance(model, VAE):
        if recoder_uri or refine.steps:
            raise UserError(f"--model {model_uri}: a {name} has its own encoder; --recoder and "
                            "--refine apply to generators")
        return EncodeBatch, {}, {"family": "vae"}
    if not isinstance(model, GAN | ExternalGenerator):
        raise UserError(f"--model {model_uri}: a {name} cannot encode; give a VAE, or a "
                        "generator with --recoder")
    if not recoder_uri and not refine.steps and not getattr(model, "has_encoder", False):
        raise UserError(f"--model {model_uri}: a {name} generator has no encoder; give "
                        "--recoder URI (a recoder trained on it) and/or --refine STEPS")
    shared = {}
    if recoder_uri:
        recoder, rspec = model_store.load_model(recoder_uri, tracking_uri=tracking_uri,
                                             role="--recoder")
        if not isinstance(recoder, Recoder | ExternalRecoder):
            raise UserError(f"--recoder {recoder_uri}: a {rspec['model']['name']}, not a "
                            "recoder")
        if not inverts(recoder, model):
            shown = (f"{recoder.input_shape} images to {recoder.latent_dim} codes"
                     if isinstance(recoder, Recoder) else "the generator's images to codes "
                     "of another size")
            raise UserError(f"--recoder {recoder_uri}: maps {shown}, but the generator makes "
                            f"{tuple(model.input_shape)} images from {model.latent_dim} codes")
        shared["recoder"] = share_model(recoder, rspec)
    return InvertBatch, shared, {"family": "gan", "encoder_uri": recoder_uri,
                                 "refine_steps": refine.steps,
                                 "style_based": bool(getattr(model, "style_based", False))}


def encode(model_uri: str, dataset: str, split: str, out: str | Path, *,
           data_path: str | None = None, limit: int | None = None, batch_size: int = 1024,
           actors: int | None = None, blocks: int | None = None, use_gpu: bool = False,
           tracking_uri: str | None = None, here: bool | None = None,
           recoder_uri: str | None = None, refine: Refinement = NO_REFINEMENT) -> Encoding:
    """Codes of a dataset split: a VAE's posterior, or a generator's codes recovered by its
    recoder and/or gradient inversion (`refine`)."""
    from latentatlas import model_store  # the driver's side only: actors never import MLflow
    from latentatlas.models.pretrained import is_pretrained, with_image

    out = Path(out).resolve()
    data = load_split(dataset, split, data_path, limit)
    if is_pretrained(model_uri):  # it takes the data's images, as its encoding records
        model_uri = with_image(model_uri, data.shape)
    model, spec = model_store.load_model(model_uri, tracking_uri=tracking_uri)
    batch_class, shared, family = encoder_for(model_uri, model, spec, recoder_uri, refine,
                                              tracking_uri)
    if tuple(spec["input_shape"]) != data.shape:
        raise UserError(f"--data {dataset}:{split}: images are {data.shape} but the model "
                        f"expects {tuple(spec['input_shape'])}")
    if here is None:  # a pool size or block count asked for means Ray Data
        here = actors is None and blocks is None and runs_here(len(data), use_gpu)
    shared = {"model": share_model(model, spec), "split": data, **shared}
    options = {"refine": refine} if batch_class is InvertBatch else {}
    # float32 codes (a VAE's mu and logvar; a generator's codes and two inversion errors),
    # the item's index and label (int64), its attributes (int8)
    codes = 4 * model.latent_dim + 8 if batch_class is InvertBatch else 8 * model.latent_dim
    need = len(data) * (codes + 16 + len(data.attrs))
    with writing(out, need):
        tmp = temp_sibling(out)
        try:
            if here:
                write_here(tmp, batch_class(**shared, **options, use_gpu=use_gpu), len(data),
                           batch_size)
            else:
                actors = actors or default_actors(use_gpu)
                rows = id_batches(len(data), batch_size, here=False,
                                  blocks=blocks or max(actors * 2, 1))
                actor_map(rows, batch_class, batch_size=batch_size, actors=actors,
                          use_gpu=use_gpu, shared=shared, **options).write_parquet(str(tmp))
            meta = EncodingMeta(model_uri, model_run_id(model_uri), dataset, split, data_path,
                                limit, len(data), model.latent_dim, __version__,
                                tuple(data.shape), tuple(sorted(data.attrs)), **family)
            return publish(tmp, out, meta)
        finally:
            if tmp.exists():  # a failed run leaves nothing half-written
                shutil.rmtree(tmp, ignore_errors=True)
