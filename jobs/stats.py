"""`latentatlas stats ENCODING`: latent statistics (activity, inactive variables, the
stationary condition), the zero-out check, variance loss and information gain, logged
to MLflow in a child run of the encoded model's run."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import numpy as np

from latentatlas.cli import common_parser, guarded
from latentatlas.report import print_table

TRAVERSAL = np.linspace(-2.25, 2.25, 10)  # the posts' range for traversal pictures
TOP_VARIABLES = 7


@dataclass
class StatsOutcome:
    run_id: str
    metrics: dict
    stats: dict  # per-variable arrays (analysis.latent.latent_stats)
    gain: np.ndarray  # information gain per variable


def stats(encoding_path: str, *, tracking_uri: str | None = None,
          experiment: str | None = None, actors: int | None = None, use_gpu: bool = False,
          seed: int = 0, gain_rows: int | None = None) -> StatsOutcome:
    import mlflow
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
    from analysis.pipelines import model_partials
    from analysis.variance import variance_loss
    from latentatlas import tracking
    from latentatlas.encode import open_encoding
    from latentatlas.encode.pipeline import default_actors, share_model
    from latentatlas.images import image_grid, stacked_rows

    tracking.setup(tracking_uri, experiment)
    enc = open_encoding(encoding_path)
    meta = enc.meta
    model, spec = tracking.load_vae(meta.model_uri)
    actors = actors or default_actors(use_gpu)
    ds = enc.dataset(override_num_blocks=2 * actors)
    split = meta.load_split()
    # One pass: latent moments, pixel moments and ablation errors together.
    parts = model_partials(ds, split, share_model(model, spec), actors=actors, use_gpu=use_gpu,
                           seed=seed, gain_rows=gain_rows)
    per_variable = latent_stats(parts["mu"], parts["sigma2_sum"])
    gain = information_gain(parts["ablation"], parts["gain_n"])
    metrics = {**summary(per_variable),
               **variance_loss(parts["real"], parts["recon"], parts["sse"], parts["gen"])}

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        z = torch.randn(16, enc.latent_dim, generator=g)
        kept = model.decode(z).numpy()
        zeroed = model.decode(torch.from_numpy(
            zero_variables(z.numpy(), per_variable["inactive"]))).numpy()
        baseline = model.decode(torch.from_numpy(zero_variables(
            z.numpy(), least_informative_active(gain, per_variable["inactive"])))).numpy()
        top = ranking(gain)[:TOP_VARIABLES]
        walk = traversal(model.decode, torch.randn(enc.latent_dim, generator=g), top,
                         TRAVERSAL).numpy()
    metrics["latent/zero_out_mse"] = float(np.mean((kept - zeroed) ** 2))
    # The same number of the least informative active variables zeroed: what "changes
    # nothing" is to be compared with.
    metrics["latent/zero_out_baseline_mse"] = float(np.mean((kept - baseline) ** 2))

    with mlflow.start_run(run_name="stats", parent_run_id=meta.model_run_id) as run:
        mlflow.set_tags({"latentatlas.kind": "stats", "encoding": str(enc.path),
                         "model_uri": meta.model_uri})
        mlflow.log_params({"dataset": meta.dataset, "split": meta.split,
                           "rows": meta.rows, "latent_dim": enc.latent_dim,
                           "information_gain_rows": parts["gain_n"]})
        mlflow.log_metrics(metrics)
        rows = table(per_variable)
        mlflow.log_table({k: [r[k] for r in rows] for k in rows[0]}, "latent_stats.json")
        mlflow.log_table({"variable": list(range(len(gain))), "information_gain": gain.tolist(),
                          "rank": np.argsort(ranking(gain)).tolist()}, "information_gain.json")
        tracking.log_figure(figures.latent_bars(per_variable), "latent_stats.png")
        tracking.log_figure(figures.sorted_bars(gain, "information gain per variable",
                                                "mse(z_i = 0) - mse"), "information_gain.png")
        tracking.log_image(stacked_rows([kept, zeroed]), "zero_out_inactive")
        tracking.log_image(image_grid(walk, ncols=len(TRAVERSAL)), "traversal_top7")
        tracking.log_figure(figures.variance_vs_mse(variance_points(run.info.run_id, metrics)),
                            "variance_vs_mse.png")
    return StatsOutcome(run.info.run_id, metrics, per_variable, gain)


def variance_points(run_id: str, metrics: dict) -> list[tuple[float, float, str]]:
    """(mse, delta_var, label) of every stats run in the experiment, this one included."""
    import mlflow

    runs = mlflow.search_runs(output_format="list",
                              filter_string="tags.`latentatlas.kind` = 'stats'")
    points = {r.info.run_id: (r.data.metrics["variance_loss/mse_recon"],
                              r.data.metrics["variance_loss/delta_var_recon"],
                              r.info.run_id[:6]) for r in runs
              if "variance_loss/mse_recon" in r.data.metrics}
    points[run_id] = (metrics["variance_loss/mse_recon"],
                      metrics["variance_loss/delta_var_recon"], run_id[:6])
    return list(points.values())


def print_outcome(out: StatsOutcome) -> None:
    s = out.stats
    print_table([{"var": int(i), "var(mu)": s["var_mu"][i], "mean(sigma^2)": s["mean_sigma2"][i],
                  "sum": s["stationary"][i], "active": bool(s["active"][i]),
                  "inactive": bool(s["inactive"][i]), "info gain": out.gain[i]}
                 for i in s["variable"]], title="latent variables")
    print_table([out.metrics], title="stats")
    print(f"MLflow run id: {out.run_id}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="latentatlas stats", parents=[common_parser()],
                                description=__doc__)
    p.add_argument("encoding", help="an encoding directory written by `latentatlas encode`")
    p.add_argument("--actors", type=int, default=None)
    p.add_argument("--use-gpu", action="store_true")
    p.add_argument("--seed", type=int, default=0, help="seed of prior samples and pictures")
    p.add_argument("--gain-rows", type=int, default=None,
                   help="information gain over the first N rows only (default: all)")
    args = p.parse_args(argv)

    def run():
        from latentatlas.runtime import init_ray

        init_ray(args.ray_address)
        print_outcome(stats(args.encoding, tracking_uri=args.tracking_uri,
                            experiment=args.experiment, actors=args.actors,
                            use_gpu=args.use_gpu, seed=args.seed, gain_rows=args.gain_rows))

    return guarded(run, args.debug)


if __name__ == "__main__":
    sys.exit(main())
