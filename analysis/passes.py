"""Thin Ray Data wrappers: map the pure functions over encoded shards, reduce in the driver."""

from __future__ import annotations

import numpy as np
import ray
import torch

from analysis.information import ablation_errors
from analysis.moments import Moments, merge_all
from latentatlas.encode.pipeline import SplitModel, map_with_actors

__all__ = ["moments_row", "moments_from_rows", "latent_partial", "latent_moments", "ModelPartial",
           "model_partials"]

def moments_row(m: Moments, prefix: str) -> dict[str, np.ndarray]:
    return {f"{prefix}_n": np.array([m.n]), f"{prefix}_mean": m.mean[None],
            f"{prefix}_m2": m.m2[None]}


def moments_from_rows(rows: list[dict], prefix: str) -> Moments:
    return merge_all(Moments(int(r[f"{prefix}_n"]), np.asarray(r[f"{prefix}_mean"]),
                             np.asarray(r[f"{prefix}_m2"])) for r in rows)


def latent_partial(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-batch moments of mu and the sum of sigma^2: one output row per input batch."""
    return {**moments_row(Moments.of(batch["mu"]), "mu"),
            "sigma2_sum": np.exp(batch["logvar"].astype(np.float64)).sum(axis=0)[None]}


def latent_moments(ds) -> tuple[Moments, np.ndarray]:
    rows = ds.select_columns(["mu", "logvar"]).map_batches(latent_partial,
                                                           batch_size=8192).take_all()
    return moments_from_rows(rows, "mu"), np.sum([r["sigma2_sum"] for r in rows], axis=0)


class ModelPartial(SplitModel):
    """Per batch of codes: latent moments, pixel moments of real, reconstructed and
    generated images, the summed squared error, and the ablation errors behind the
    information gain."""

    def __init__(self, seed: int = 0, gain_rows: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.seed, self.gain_rows = seed, gain_rows

    @torch.no_grad()
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = self.images(batch["index"])
        # Ray Data hands read-only views of Arrow buffers; torch wants writable memory.
        mu = torch.as_tensor(np.array(batch["mu"]), device=self.device)
        decode = self.model.decode
        x_hat = decode(mu)
        # Prior samples, as many as the batch has codes, seeded by the batch's first index
        # so the result does not depend on how the rows were split into blocks.
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(batch["index"].min()))
        z = torch.randn(len(mu), mu.shape[1], generator=g).to(self.device)
        flat = lambda t: t.flatten(1).cpu().numpy()  # noqa: E731
        # The information gain costs d+1 decodes per item: it may use the first rows only.
        gain = torch.from_numpy(batch["index"] < (self.gain_rows or np.inf)).to(self.device)
        return {**latent_partial(batch),
                **moments_row(Moments.of(flat(x)), "real"),
                **moments_row(Moments.of(flat(x_hat)), "recon"),
                **moments_row(Moments.of(flat(decode(z))), "gen"),
                "sse": np.array([float((x - x_hat).pow(2).sum())]),
                "ablation": ablation_errors(decode, mu[gain], x[gain])[None],
                "gain_n": np.array([int(gain.sum())])}


def model_partials(ds, split, model_ref, actors: int = 2,
                   batch_size: int = 1000, use_gpu: bool = False, seed: int = 0,
                   gain_rows: int | None = None) -> dict:
    rows = map_with_actors(
        ds.select_columns(["index", "mu", "logvar"]), ModelPartial, batch_size=batch_size,
        actors=actors, use_gpu=use_gpu, model_ref=model_ref, split_ref=ray.put(split),
        seed=seed, gain_rows=gain_rows).take_all()
    return {"real": moments_from_rows(rows, "real"), "recon": moments_from_rows(rows, "recon"),
            "gen": moments_from_rows(rows, "gen"), "sse": float(sum(r["sse"] for r in rows)),
            "ablation": np.sum([r["ablation"] for r in rows], axis=0),
            "n": int(sum(r["real_n"] for r in rows)),
            "gain_n": int(sum(r["gain_n"] for r in rows)),
            "mu": moments_from_rows(rows, "mu"),
            "sigma2_sum": np.sum([r["sigma2_sum"] for r in rows], axis=0)}
