"""Thin Ray Data wrappers that run a model over encoded shards (decoders, generators,
inversions) and reduce in the driver; passes over codes alone are in analysis/passes.py."""

from __future__ import annotations

import numpy as np
import torch

from analysis.information import ablation_errors
from analysis.moments import Moments
from analysis.passes import latent_partial, moments_from, moments_row
from latentatlas.batches import default_actors, id_batches, map_with_actors, runs_here
from latentatlas.encode.pipeline import InvertBatch, SplitModel


def prior_samples(index: np.ndarray, d: int, seed: int) -> torch.Tensor:
    """One N(0, I) draw per row, fixed by (seed, row index): the same draws however the rows
    are cut into blocks and batches (Ray Data's blocks or this process's batches). A model's
    `codes` turns them into codes (a style generator's w)."""
    g, z = torch.Generator(), torch.empty(len(index), d)
    for i, row in enumerate(np.asarray(index)):
        g.manual_seed(seed * 1_000_003 + int(row))
        z[i] = torch.randn(d, generator=g)
    return z


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
        z = self.model.codes(prior_samples(batch["index"], self.model.noise_dim,
                                           self.seed).to(self.device))
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


def model_partials(source, split, model, actors: int | None = None, batch_size: int = 1000,
                   use_gpu: bool = False, seed: int = 0, gain_rows: int | None = None) -> dict:
    """One pass of `ModelPartial` over batches of `index`, `mu`, `logvar`; `model` is a
    `share_model` value."""
    parts = map_with_actors(source, ModelPartial, batch_size=batch_size, actors=actors,
                            use_gpu=use_gpu, shared={"model": model, "split": split},
                            seed=seed, gain_rows=gain_rows)
    return {"real": moments_from(parts, "real"), "recon": moments_from(parts, "recon"),
            "gen": moments_from(parts, "gen"), "sse": float(parts["sse"].sum()),
            "ablation": parts["ablation"].sum(axis=0),
            "n": int(parts["real_n"].sum()), "gain_n": int(parts["gain_n"].sum()),
            "mu": moments_from(parts, "mu"), "sigma2_sum": parts["sigma2_sum"].sum(axis=0)}


def regeneration_errors(split, shared: dict, refine, actors: int | None = None,
                        use_gpu: bool = False, here: bool | None = None,
                        batch_size: int = 1024) -> dict[str, np.ndarray]:
    """Per image of `split`, ordered by row: the pixel MSE of regenerating it from its first
    guessed code (`guess_mse`) and after gradient refinement (`inversion_mse`). `shared`
    holds the generator (`model`) and optionally a `recoder`, as `share_model` values."""
    here = runs_here(len(split), use_gpu) if here is None else here
    if not here:
        actors = actors or default_actors(use_gpu)
    source = id_batches(len(split), batch_size, here=here, blocks=None if here else 2 * actors)
    parts = map_with_actors(source, InvertBatch, batch_size=batch_size, actors=actors,
                            use_gpu=use_gpu, shared={**shared, "split": split}, refine=refine)
    order = np.argsort(parts["index"], kind="stable")
    return {k: parts[k][order] for k in ("index", "guess_mse", "inversion_mse")}
