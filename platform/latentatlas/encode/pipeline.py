"""`encode`: Ray Data batch inference (an actor pool holding the model) into Parquet."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import torch

from latentatlas import __version__, runtime
from latentatlas.batches import (
    actor_map,
    concat,
    default_actors,
    in_batches,
    resolve,
    runs_here,
)
from latentatlas.data import load_split
from latentatlas.encode.store import Encoding, EncodingMeta, publish, temp_sibling
from latentatlas.errors import UserError
from latentatlas.images import to_unit_float
from latentatlas.models import rebuild_vae


def device_for(use_gpu: bool) -> torch.device:
    return torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")


def share_model(model: torch.nn.Module, spec: dict) -> dict:
    """What workers rebuild a loaded VAE from: its spec and CPU weights. Actors then need
    neither MLflow (seconds to import and download) nor the model store."""
    return {"spec": spec, "state": {k: v.detach().cpu() for k, v in model.state_dict().items()}}


def shared_model(shared, device: torch.device) -> torch.nn.Module:
    """The VAE a `share_model` value (or its object-store reference) describes, on `device`."""
    shared = resolve(shared)
    return rebuild_vae(shared["spec"], shared["state"], device)


class SplitModel:
    """Worker state shared by the passes: a VAE and one dataset split in memory."""

    def __init__(self, model, split, use_gpu: bool = False):
        self.device = device_for(use_gpu)
        self.model = shared_model(model, self.device)
        self.split = resolve(split)

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


ROW_GROUP = 8192  # rows per Parquet row group: readers of an index range skip the others


def write_here(tmp: Path, encode_batch: EncodeBatch, rows: int, batch_size: int) -> None:
    """The codes of `rows` items encoded in this process, as one shard with the columns and
    tensor types Ray Data writes."""
    from ray.data.extensions import ArrowTensorArray

    codes = concat(encode_batch(batch)
                   for batch in in_batches({"id": np.arange(rows)}, batch_size))
    table = pa.table({k: ArrowTensorArray.from_numpy(v) if v.ndim > 1 else v
                      for k, v in codes.items()})
    tmp.mkdir()
    pq.write_table(table, tmp / "part-00000.parquet", row_group_size=ROW_GROUP)


def model_run_id(model_uri: str) -> str | None:
    return model_uri.split("/")[1] if model_uri.startswith("runs:/") else None


def encode(model_uri: str, dataset: str, split: str, out: str | Path, *,
           data_path: str | None = None, limit: int | None = None, batch_size: int = 1024,
           actors: int | None = None, blocks: int | None = None, use_gpu: bool = False,
           tracking_uri: str | None = None, here: bool | None = None) -> Encoding:
    from latentatlas import tracking  # the driver's side only: actors never import MLflow

    out = Path(out).resolve()
    model, spec = tracking.load_vae(model_uri, tracking_uri=tracking_uri)
    data = load_split(dataset, split, data_path, limit)
    if tuple(spec["input_shape"]) != data.shape:
        raise UserError(f"--data {dataset}:{split}: images are {data.shape} but the model "
                        f"expects {tuple(spec['input_shape'])}")
    if here is None:  # a pool size or block count asked for means Ray Data
        here = actors is None and blocks is None and runs_here(len(data), use_gpu)
    shared = share_model(model, spec)
    tmp = temp_sibling(out)
    try:
        if here:
            write_here(tmp, EncodeBatch(shared, data), len(data), batch_size)
        else:
            runtime.need_ray()
            actors = actors or default_actors(use_gpu)
            rows = ray.data.range(len(data), override_num_blocks=blocks or max(actors * 2, 1))
            actor_map(rows, EncodeBatch, batch_size=batch_size, actors=actors, use_gpu=use_gpu,
                      shared={"model": shared, "split": data}).write_parquet(str(tmp))
        meta = EncodingMeta(model_uri, model_run_id(model_uri), dataset, split, data_path,
                            limit, len(data), model.latent_dim, __version__, tuple(data.shape),
                            tuple(sorted(data.attrs)))
        return publish(tmp, out, meta)
    finally:
        if tmp.exists():  # a failed run leaves nothing half-written
            shutil.rmtree(tmp)
