"""Latent statistics, the zero-out check, variance loss and information gain of an encoding,
in one Ray Data pass over its shards (the decoder in an actor pool)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from analysis import figures
from analysis.information import information_gain, ranking, traversal
from analysis.latent import (
    latent_stats,
    least_informative_active,
    summary,
    table,
    zero_variables,
)
from analysis.model_passes import model_partials
from analysis.variance import variance_loss
from latentatlas.batches import default_actors, encoding_batches, runs_here
from latentatlas.encode import Encoding
from latentatlas.images import readable_grid, readable_rows
from latentatlas.models import share_model
from latentatlas.record import Record

__all__ = ["LatentSpaceStats", "measure_latent_space", "TRAVERSAL", "TOP_VARIABLES"]

TRAVERSAL = np.linspace(-2.25, 2.25, 10)  # the posts' range for traversal pictures
TOP_VARIABLES = 7

PASS_BATCH = 1000  # rows per model call: prior samples are seeded per batch


@dataclass
class LatentSpaceStats:
    encoding: Encoding
    metrics: dict  # latent/*, variance_loss/*
    stats: dict  # per-variable arrays (analysis.latent.latent_stats)
    gain: np.ndarray  # information gain per variable
    gain_rows: int  # items the gain was averaged over
    samples: np.ndarray  # 16 prior samples decoded as they are ...
    zeroed: np.ndarray  # ... with the inactive variables zeroed
    walk: np.ndarray  # traversal of the most informative variables

    def record(self, variance_points: list[tuple[float, float, str]] = ()) -> Record:
        """`variance_points`: (mse, delta_var, label) of other runs to plot beside this one."""
        meta, rows = self.encoding.meta, table(self.stats)
        points = [*variance_points, (self.metrics["variance_loss/mse_recon"],
                                     self.metrics["variance_loss/delta_var_recon"], "this run")]
        gain = self.gain
        return Record(
            "stats", f"stats {self.encoding.path.name}",  # one per encoding: named by it
            params={"dataset": meta.dataset, "split": meta.split, "rows": meta.rows,
                    "latent_dim": meta.latent_dim, "information_gain_rows": self.gain_rows,
                    # the rows of traversal_top7, most informative first (as `sectors`
                    # logs its `variables`)
                    "traversal_variables": ",".join(map(str, ranking(gain)[:TOP_VARIABLES]))},
            metrics=self.metrics,
            tags={"encoding": str(self.encoding.path), "model_uri": meta.model_uri},
            tables={"latent_stats.json": {k: [r[k] for r in rows] for k in rows[0]},
                    "information_gain.json": {"variable": list(range(len(gain))),
                                              "information_gain": gain.tolist(),
                                              "rank": np.argsort(ranking(gain)).tolist()}},
            figures={"latent_stats.png": lambda: figures.latent_bars(self.stats),
                     "information_gain.png": lambda: figures.sorted_bars(
                         gain, "information gain per variable", "mse(z_i = 0) - mse"),
                     "variance_vs_mse.png": lambda: figures.variance_vs_mse(points)},
            images={"zero_out_inactive": readable_rows(
                        [self.samples, self.zeroed], ["prior samples", "inactive zeroed"]),
                    "traversal_top7": readable_grid(
                        self.walk, ncols=len(TRAVERSAL),
                        rows=[f"z{v}" for v in ranking(gain)[:TOP_VARIABLES]],
                        columns=[f"{t:+.1f}" for t in TRAVERSAL])})


def measure_latent_space(enc: Encoding, model: torch.nn.Module, spec: dict, *,
                         actors: int | None = None, use_gpu: bool = False, seed: int = 0,
                         gain_rows: int | None = None,
                         here: bool | None = None) -> LatentSpaceStats:
    """`model` is the encoding's model (loaded by the caller: no model store here). `here`:
    run the pass in this process (default: when the encoding is small)."""
    here = runs_here(enc.meta.rows, use_gpu) if here is None else here
    if not here:
        actors = actors or default_actors(use_gpu)
    columns = ["index", *enc.code_columns]
    source = encoding_batches(enc, columns, here=here, batch_size=PASS_BATCH,
                              blocks=None if here else 2 * actors)
    # One pass: latent moments, pixel moments and ablation errors together.
    parts = model_partials(source, enc.meta.load_split(), share_model(model, spec),
                           actors=actors, batch_size=PASS_BATCH, use_gpu=use_gpu, seed=seed,
                           gain_rows=gain_rows)
    per_variable = latent_stats(parts["mu"], parts["sigma2_sum"])
    gain = information_gain(parts["ablation"], parts["gain_n"])
    metrics = {**summary(per_variable),
               **variance_loss(parts["real"], parts["recon"], parts["sse"], parts["gen"])}

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        z = model.codes(torch.randn(16, model.noise_dim, generator=g))
        kept = model.decode(z).numpy()
        zeroed = model.decode(torch.from_numpy(
            zero_variables(z.numpy(), per_variable["inactive"]))).numpy()
        baseline = model.decode(torch.from_numpy(zero_variables(
            z.numpy(), least_informative_active(gain, per_variable["inactive"])))).numpy()
        walk = traversal(model.decode, model.codes(torch.randn(1, model.noise_dim,
                                                               generator=g))[0],
                         ranking(gain)[:TOP_VARIABLES], TRAVERSAL).numpy()
    metrics["latent/zero_out_mse"] = float(np.mean((kept - zeroed) ** 2))
    # The same number of the least informative active variables zeroed (every active one when
    # there are fewer): what "changes nothing" is to be compared with.
    metrics["latent/zero_out_baseline_mse"] = float(np.mean((kept - baseline) ** 2))
    return LatentSpaceStats(enc, metrics, per_variable, gain, parts["gain_n"], kept, zeroed,
                            walk)
